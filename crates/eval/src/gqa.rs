//! GQA, scored as LLaVA does it: `scripts/convert_gqa_for_eval.py` turns each answer into a
//! prediction (`text.rstrip('.').lower()`, [`prediction`]), then GQA's official `eval.py` (with
//! LLaVA's change for the test-dev release, which lacks choices and scene graphs) computes accuracy
//! by exact string match against `answer` over the questions with `isBalanced`.
//!
//! Reported here: accuracy, and its split into binary (structural type other than `query`) and open
//! (`query`) questions, plus per structural and per semantic type — the `eval.py` metrics that need
//! only the questions file. Validity, plausibility, consistency, grounding and the distribution
//! score are not computed.
use crate::error::{Error, Result};
use crate::formats::{AnswerLine, QuestionId};
use crate::pyjson;
use crate::table;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// One question of GQA's `{tier}_questions.json` (only the fields the accuracy needs).
#[derive(Clone, Debug, PartialEq)]
pub struct GqaQuestion {
    /// `answer`.
    pub answer: String,
    /// `isBalanced`.
    pub is_balanced: bool,
    /// `types.structural` (`query`, `verify`, `logical`, `choose`, `compare`).
    pub structural: String,
    /// `types.semantic` (`obj`, `attr`, `cat`, `rel`, `global`).
    pub semantic: String,
}

/// Reads GQA's questions file (an object keyed by question id). Errors name the file and the
/// question id whose field is missing.
pub fn read_questions(path: &Path) -> Result<Vec<(String, GqaQuestion)>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::line(path, e.line(), format!("malformed JSON: {e}")))?;
    let serde_json::Value::Object(m) = v else {
        return Err(Error::file(path, "expected a JSON object keyed by question id"));
    };
    if m.is_empty() {
        return Err(Error::file(path, "no GQA questions (an empty JSON object)"));
    }
    let mut out = Vec::with_capacity(m.len());
    for (qid, q) in m {
        let field = |p: &str| -> Result<&serde_json::Value> {
            q.pointer(p)
                .ok_or_else(|| Error::file(path, format!("question {qid}: missing `{}`", &p[1..].replace('/', "."))))
        };
        let s = |p: &str| -> Result<String> {
            field(p)?.as_str().map(str::to_string).ok_or_else(|| {
                Error::file(path, format!("question {qid}: `{}` must be a string", &p[1..].replace('/', ".")))
            })
        };
        let is_balanced = field("/isBalanced")?
            .as_bool()
            .ok_or_else(|| Error::file(path, format!("question {qid}: `isBalanced` must be true or false")))?;
        let q = GqaQuestion {
            answer: s("/answer")?,
            is_balanced,
            structural: s("/types/structural")?,
            semantic: s("/types/semantic")?,
        };
        out.push((qid, q));
    }
    Ok(out)
}

/// `convert_gqa_for_eval.py`'s prediction: trailing dots removed, lower-cased.
pub fn prediction(text: &str) -> String {
    pyjson::rstrip_chars(text, ".").to_lowercase()
}

/// Accuracy of a group of questions.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Group {
    /// Percent correct (`eval.py`'s `avg(...) * 100`; 0 for an empty group).
    pub accuracy: f64,
    /// Questions.
    pub count: usize,
}

/// GQA result (percentages, as `eval.py` prints them).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GqaResult {
    /// Accuracy over balanced questions, percent.
    pub accuracy: f64,
    /// Balanced questions scored.
    pub count: usize,
    /// Correct answers.
    pub correct: usize,
    /// Binary questions (structural type not `query`).
    pub binary: Group,
    /// Open questions (structural type `query`).
    pub open: Group,
    /// Per `types.structural`.
    pub per_structural_type: BTreeMap<String, Group>,
    /// Per `types.semantic`.
    pub per_semantic_type: BTreeMap<String, Group>,
    /// Answers whose question is not in the questions file (ignored, as by `eval.py`).
    pub answers_not_in_questions: usize,
}

fn group(v: &[bool]) -> Group {
    let correct = v.iter().filter(|&&c| c).count();
    let accuracy = if v.is_empty() { 0.0 } else { correct as f64 / v.len() as f64 * 100.0 };
    Group { accuracy, count: v.len() }
}

/// Scores answers (the last answer of a repeated question id wins, as in `eval.py`'s dict). Errors:
/// a balanced question without an answer (`eval.py` stops with "missing predictions"); the error
/// names the answers file and the first such question id.
pub fn score(answers: &[AnswerLine], answers_path: &Path, questions: &[(String, GqaQuestion)]) -> Result<GqaResult> {
    let mut preds: HashMap<&QuestionId, String> = HashMap::new();
    for a in answers {
        preds.insert(&a.question_id, prediction(&a.text));
    }
    let mut all = Vec::new();
    let mut binary = Vec::new();
    let mut open = Vec::new();
    let mut per_structural: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    let mut per_semantic: BTreeMap<String, Vec<bool>> = BTreeMap::new();
    let mut missing = Vec::new();
    let mut known = 0;
    for (qid, q) in questions {
        let key = QuestionId::Str(qid.clone());
        let pred = preds.get(&key);
        if pred.is_some() {
            known += 1;
        }
        if !q.is_balanced {
            continue;
        }
        let Some(pred) = pred else {
            missing.push(qid.as_str());
            continue;
        };
        let correct = *pred == q.answer;
        all.push(correct);
        if q.structural == "query" {
            open.push(correct)
        } else {
            binary.push(correct)
        }
        per_structural.entry(q.structural.clone()).or_default().push(correct);
        per_semantic.entry(q.semantic.clone()).or_default().push(correct);
    }
    if !missing.is_empty() {
        missing.sort_unstable();
        return Err(Error::file(
            answers_path,
            format!("no answer for {} balanced GQA question(s), e.g. question_id \"{}\" (GQA's eval.py requires one for every balanced question)", missing.len(), missing[0]),
        ));
    }
    let g = group(&all);
    Ok(GqaResult {
        accuracy: g.accuracy,
        count: g.count,
        correct: all.iter().filter(|&&c| c).count(),
        binary: group(&binary),
        open: group(&open),
        per_structural_type: per_structural.iter().map(|(k, v)| (k.clone(), group(v))).collect(),
        per_semantic_type: per_semantic.iter().map(|(k, v)| (k.clone(), group(v))).collect(),
        answers_not_in_questions: preds.len() - known,
    })
}

impl GqaResult {
    /// A short text table.
    pub fn table(&self) -> String {
        let mut rows = vec![
            vec!["accuracy".into(), format!("{:.2}", self.accuracy), self.count.to_string()],
            vec!["binary".into(), format!("{:.2}", self.binary.accuracy), self.binary.count.to_string()],
            vec!["open".into(), format!("{:.2}", self.open.accuracy), self.open.count.to_string()],
        ];
        for (k, g) in &self.per_structural_type {
            rows.push(vec![format!("structural: {k}"), format!("{:.2}", g.accuracy), g.count.to_string()]);
        }
        for (k, g) in &self.per_semantic_type {
            rows.push(vec![format!("semantic: {k}"), format!("{:.2}", g.accuracy), g.count.to_string()]);
        }
        table::render(&["GQA", "acc %", "questions"], &rows)
    }
}

//! TextVQA, scored as `llava/eval/eval_textvqa.py` (`eval_single`, `prompt_processor`) with
//! `llava/eval/m4c_evaluator.py` (`TextVQAAccuracyEvaluator`, see [`crate::m4c`]).
//!
//! * Each answer is matched to its annotation by `(question_id, question.lower())`, the annotation
//!   key being `(image_id, question.lower())` of `TextVQA_0.5.1_val.json`'s `data` (a repeated key
//!   keeps the last entry). LLaVA's question ids are the TextVQA image ids.
//! * The question is recovered from the answer's `prompt` ([`question_from_prompt`]).
//! * Accuracy = mean VQA accuracy over the answers, in answers-file order ([`crate::m4c::vqa_accuracy`]).
use crate::error::{Error, Result};
use crate::formats::{AnswerLine, QuestionId};
use crate::m4c;
use crate::table;
use regex::Regex;
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;
use std::sync::OnceLock;

/// `prompt_processor`: the question inside an answer's prompt, lower-cased.
///
/// * prompt starting `OCR tokens: ` → the text between `Question: ` and ` Short answer:`;
/// * prompt containing `Reference OCR token: ` in exactly 3 lines → line 2 if the prompt starts with
///   `Reference OCR token:`, else line 1 (LLaVA-1.5's `llava_textvqa_val_v051_ocr.jsonl`);
/// * exactly 2 lines → line 1;
/// * anything else is an error (the reference asserts).
pub fn question_from_prompt(prompt: &str) -> std::result::Result<String, String> {
    let lines: Vec<&str> = prompt.split('\n').collect();
    let q = if prompt.starts_with("OCR tokens: ") {
        static R: OnceLock<Regex> = OnceLock::new();
        let re = R.get_or_init(|| Regex::new(r"(?s)Question: (.*?) Short answer:").expect("valid regex"));
        re.captures(prompt)
            .and_then(|c| c.get(1))
            .map(|m| m.as_str())
            .ok_or("prompt starts with `OCR tokens: ` but has no `Question: ... Short answer:`")?
    } else if prompt.contains("Reference OCR token: ") && lines.len() == 3 {
        if prompt.starts_with("Reference OCR token:") {
            lines[1]
        } else {
            lines[0]
        }
    } else if lines.len() == 2 {
        lines[0]
    } else {
        return Err(format!(
            "cannot find the question in the prompt ({} lines; eval_textvqa.py expects the question, optionally the OCR-token line, and the suffix line)",
            lines.len()
        ));
    };
    Ok(q.to_lowercase())
}

/// Annotations keyed by `(image_id, question.lower())`, each with its 10 human answers.
pub type Annotations = HashMap<(QuestionId, String), Vec<String>>;

/// Reads `TextVQA_0.5.1_val.json` (`{"data": [{"image_id", "question", "answers", ...}]}`). Errors
/// name the file and the entry index.
pub fn read_annotations(path: &Path) -> Result<Annotations> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::line(path, e.line(), format!("malformed JSON: {e}")))?;
    let data = v
        .get("data")
        .and_then(|d| d.as_array())
        .ok_or_else(|| Error::file(path, "expected an object with a `data` array"))?;
    if data.is_empty() {
        return Err(Error::file(path, "no TextVQA annotations (an empty `data` array)"));
    }
    let mut out = HashMap::with_capacity(data.len());
    for (i, d) in data.iter().enumerate() {
        let bad = |what: &str| Error::file(path, format!("data[{i}]: {what}"));
        let image_id = d
            .get("image_id")
            .and_then(QuestionId::from_value)
            .ok_or_else(|| bad("`image_id` must be a string or an integer"))?;
        let question = d.get("question").and_then(|q| q.as_str()).ok_or_else(|| bad("`question` must be a string"))?;
        let answers = d
            .get("answers")
            .and_then(|a| a.as_array())
            .and_then(|a| a.iter().map(|x| x.as_str().map(str::to_string)).collect::<Option<Vec<_>>>())
            .ok_or_else(|| bad("`answers` must be an array of strings"))?;
        out.insert((image_id, question.to_lowercase()), answers);
    }
    Ok(out)
}

/// One answer's score.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AnswerScore {
    /// Answers-file line.
    pub line: usize,
    /// `question_id`.
    pub question_id: QuestionId,
    /// The normalised prediction.
    pub normalized: String,
    /// VQA accuracy in [0, 1].
    pub score: f64,
}

/// TextVQA result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TextVqaResult {
    /// Mean VQA accuracy in [0, 1] (the reference prints it ×100).
    pub accuracy: f64,
    /// Answers scored.
    pub samples: usize,
    /// Per answer, in file order.
    pub answers: Vec<AnswerScore>,
}

/// Scores answers. Errors (naming answers file and line): a prompt the question cannot be read
/// from, no annotation for `(question_id, question)`, an annotation without exactly 10 answers.
pub fn score(answers: &[AnswerLine], answers_path: &Path, annotations: &Annotations) -> Result<TextVqaResult> {
    let mut out = Vec::with_capacity(answers.len());
    for a in answers {
        let q = question_from_prompt(&a.prompt).map_err(|m| Error::line(answers_path, a.line, m))?;
        let gt = annotations.get(&(a.question_id.clone(), q.clone())).ok_or_else(|| {
            Error::line(
                answers_path,
                a.line,
                format!("no TextVQA annotation with image_id {} and question {:?}", a.question_id, q),
            )
        })?;
        let score = m4c::vqa_accuracy(&a.text, gt)
            .map_err(|m| Error::line(answers_path, a.line, format!("annotation of this question: {m}")))?;
        out.push(AnswerScore {
            line: a.line,
            question_id: a.question_id.clone(),
            normalized: m4c::normalize(&a.text),
            score,
        });
    }
    let sum: f64 = out.iter().map(|s| s.score).fold(0.0, |acc, s| acc + s);
    Ok(TextVqaResult { accuracy: sum / out.len() as f64, samples: out.len(), answers: out })
}

impl TextVqaResult {
    /// A short text table.
    pub fn table(&self) -> String {
        table::render(
            &["TextVQA", "acc %", "samples"],
            &[vec!["all".into(), table::pct(Some(self.accuracy)), self.samples.to_string()]],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts() {
        assert_eq!(
            question_from_prompt("What Is it?\nAnswer the question using a single word or phrase.").unwrap(),
            "what is it?"
        );
        assert_eq!(
            question_from_prompt(
                "What brand?\nReference OCR token: A, B\nAnswer the question using a single word or phrase."
            )
            .unwrap(),
            "what brand?"
        );
        assert_eq!(question_from_prompt("OCR tokens: a b Question: What Is x? Short answer:").unwrap(), "what is x?");
        assert!(question_from_prompt("one line").is_err());
    }
}

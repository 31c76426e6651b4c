//! ScienceQA, scored as `llava/eval/eval_science_qa.py` (`__main__`, `get_pred_idx`).
//!
//! * Problems: the ids of `pid_splits.json[split]` (default `test`), looked up in `problems.json`
//!   (`choices`, `answer` = index of the right choice).
//! * Answers by `question_id` (the last one of a repeated id wins); a problem without an answer
//!   counts as wrong (`FAILED`). Ids are strings in ScienceQA; an integer id never matches.
//! * The letter ([`parse_letter`]): the whole text if it is one of `A`..`E`; else its first character
//!   if the text is at least 3 characters and continues with `". "`; else the `X` of the only match of
//!   the regex `The answer is ([A-Z]).` (any character after the letter); else `FAILED`.
//! * Correct when the letter's index (among the first `len(choices)` of `A`..`E`) equals `answer`.
//! * Accuracy in percent; IMG-accuracy over the problems whose answer `prompt` contains `<image>`.
use crate::error::{Error, Result};
use crate::formats::{AnswerLine, QuestionId};
use crate::table;
use regex::Regex;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::OnceLock;

/// The reference's `--options` default.
pub const OPTIONS: [&str; 5] = ["A", "B", "C", "D", "E"];

/// The letter the reference reads from an answer, or `"FAILED"` (see the module docs).
pub fn parse_letter(pred_text: &str) -> String {
    if OPTIONS.contains(&pred_text) {
        return pred_text.to_string();
    }
    let chars: Vec<char> = pred_text.chars().collect();
    if chars.len() >= 3 && OPTIONS.contains(&chars[0].to_string().as_str()) && chars[1] == '.' && chars[2] == ' ' {
        return chars[0].to_string();
    }
    static R: OnceLock<Regex> = OnceLock::new();
    let re = R.get_or_init(|| Regex::new(r"The answer is ([A-Z]).").expect("valid regex"));
    let found: Vec<&str> = re.captures_iter(pred_text).map(|c| c.get(1).map_or("", |m| m.as_str())).collect();
    if found.len() == 1 {
        found[0].to_string()
    } else {
        "FAILED".to_string()
    }
}

/// `get_pred_idx`: the index of `letter` among the first `n_choices` options, or -1.
pub fn pred_index(letter: &str, n_choices: usize) -> i64 {
    OPTIONS[..n_choices.min(OPTIONS.len())].iter().position(|o| *o == letter).map_or(-1, |i| i as i64)
}

/// One ScienceQA problem (the fields the score needs).
#[derive(Clone, Debug, PartialEq)]
pub struct Problem {
    /// Number of `choices`.
    pub n_choices: usize,
    /// `answer`, the index of the right choice.
    pub answer: i64,
}

/// Reads `pid_splits.json` and `problems.json` from `base_dir` and returns the problems of `split`
/// in split order (a repeated id once). Errors: missing files or split, a split id absent from
/// `problems.json`, a problem without `choices` or integer `answer`, an `answer` beyond `E`.
pub fn read_problems(base_dir: &Path, split: &str) -> Result<Vec<(String, Problem)>> {
    let load = |name: &str| -> Result<serde_json::Value> {
        let p = base_dir.join(name);
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        serde_json::from_str(&text).map_err(|e| Error::line(&p, e.line(), format!("malformed JSON: {e}")))
    };
    let splits_path = base_dir.join("pid_splits.json");
    let problems_path = base_dir.join("problems.json");
    let splits = load("pid_splits.json")?;
    let problems = load("problems.json")?;
    let ids = splits
        .get(split)
        .and_then(|v| v.as_array())
        .ok_or_else(|| Error::file(&splits_path, format!("no split `{split}` (an array of problem ids)")))?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for id in ids {
        let id = id
            .as_str()
            .ok_or_else(|| Error::file(&splits_path, format!("split `{split}`: problem id {id} is not a string")))?;
        if !seen.insert(id) {
            continue;
        }
        let p = problems
            .get(id)
            .ok_or_else(|| Error::file(&problems_path, format!("problem \"{id}\" of split `{split}` is missing")))?;
        let n_choices = p
            .get("choices")
            .and_then(|c| c.as_array())
            .ok_or_else(|| Error::file(&problems_path, format!("problem \"{id}\": `choices` must be an array")))?
            .len();
        let answer = p
            .get("answer")
            .and_then(|a| a.as_i64())
            .ok_or_else(|| Error::file(&problems_path, format!("problem \"{id}\": `answer` must be an integer")))?;
        if !(0..OPTIONS.len() as i64).contains(&answer) {
            return Err(Error::file(
                &problems_path,
                format!("problem \"{id}\": `answer` {answer} is not one of the options A..E"),
            ));
        }
        out.push((id.to_string(), Problem { n_choices, answer }));
    }
    if out.is_empty() {
        return Err(Error::file(&splits_path, format!("no problems in split `{split}`")));
    }
    Ok(out)
}

/// One problem's outcome.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProblemResult {
    /// Problem id.
    pub question_id: String,
    /// The letter read from the answer, or `FAILED`.
    pub parsed: String,
    /// Its index among the choices, -1 if none.
    pub pred_idx: i64,
    /// The right letter.
    pub ground_truth: String,
    /// `pred_idx == answer`.
    pub correct: bool,
    /// The answer's prompt contains `<image>`.
    pub multimodal: bool,
}

/// ScienceQA result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SqaResult {
    /// Accuracy, percent.
    pub accuracy: f64,
    /// Correct problems.
    pub correct: usize,
    /// Problems in the split.
    pub count: usize,
    /// Accuracy over problems with an image, percent (`None` if there are none).
    pub img_accuracy: Option<f64>,
    /// Correct problems with an image.
    pub img_correct: usize,
    /// Problems with an image (with an answer whose prompt has `<image>`).
    pub img_count: usize,
    /// Problems without an answer (counted wrong).
    pub missing: usize,
    /// Per problem, in split order.
    pub problems: Vec<ProblemResult>,
}

/// Scores answers against the split's problems.
pub fn score(answers: &[AnswerLine], problems: &[(String, Problem)]) -> SqaResult {
    let mut by_id: HashMap<&QuestionId, &AnswerLine> = HashMap::new();
    for a in answers {
        by_id.insert(&a.question_id, a);
    }
    let mut out = Vec::with_capacity(problems.len());
    let mut missing = 0;
    for (id, p) in problems {
        let (text, prompt) = match by_id.get(&QuestionId::Str(id.clone())) {
            Some(a) => (a.text.as_str(), a.prompt.as_str()),
            None => {
                missing += 1;
                ("FAILED", "Unknown")
            }
        };
        let parsed = parse_letter(text);
        let pred_idx = pred_index(&parsed, p.n_choices);
        out.push(ProblemResult {
            question_id: id.clone(),
            ground_truth: OPTIONS[p.answer as usize].to_string(),
            correct: pred_idx == p.answer,
            multimodal: prompt.contains("<image>"),
            parsed,
            pred_idx,
        });
    }
    let correct = out.iter().filter(|r| r.correct).count();
    let img_count = out.iter().filter(|r| r.multimodal).count();
    let img_correct = out.iter().filter(|r| r.multimodal && r.correct).count();
    SqaResult {
        accuracy: if out.is_empty() { 0.0 } else { correct as f64 / out.len() as f64 * 100.0 },
        correct,
        count: out.len(),
        img_accuracy: (img_count > 0).then(|| img_correct as f64 / img_count as f64 * 100.0),
        img_correct,
        img_count,
        missing,
        problems: out,
    }
}

impl SqaResult {
    /// A short text table.
    pub fn table(&self) -> String {
        table::render(
            &["ScienceQA", "acc %", "correct", "problems"],
            &[
                vec!["all".into(), format!("{:.2}", self.accuracy), self.correct.to_string(), self.count.to_string()],
                vec![
                    "IMG".into(),
                    table::num(self.img_accuracy),
                    self.img_correct.to_string(),
                    self.img_count.to_string(),
                ],
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters() {
        assert_eq!(parse_letter("B"), "B");
        assert_eq!(parse_letter("C. a cat"), "C");
        assert_eq!(parse_letter("The answer is D."), "D");
        assert_eq!(parse_letter("The answer is D"), "FAILED");
        assert_eq!(parse_letter("The answer is A. The answer is B."), "FAILED");
        assert_eq!(parse_letter("b"), "FAILED");
        assert_eq!(pred_index("E", 3), -1);
    }
}

//! POPE (object hallucination), scored as `llava/eval/eval_pope.py` (`eval_pope` and `__main__`).
//!
//! * Answers are split by the `category` of their question in the question file
//!   (`llava_pope_test.jsonl`); each category is scored against the label file
//!   `coco_pope_<category>.json` of the annotation directory (JSON lines with a `label`).
//! * An answer is "no" when the words (split on single spaces) of its first sentence (text before the
//!   first `.`, commas deleted) include `No`, `no` or `not`; otherwise "yes" ([`is_no`]).
//! * A label is "no" when it equals `no`, "yes" otherwise.
//! * Answers and labels are paired **by position** (the i-th answer of a category with the i-th line
//!   of its label file; extra ones on either side are not counted), because the reference zips them:
//!   LLaVA's question ids (`1…`, `10000001…`, `20000001…`) are not the label files' ids.
//! * Accuracy, precision, recall, F1 over the pairs; yes-ratio over all the category's answers.
//!   Where the reference would divide by zero (and stop), the value is `None`.
use crate::error::{Error, Result};
use crate::formats::{AnswerLine, Question, QuestionId};
use crate::table;
use serde::Serialize;
use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

/// `eval_pope`'s rule for a "no" answer (see the module docs).
pub fn is_no(text: &str) -> bool {
    let first = text.find('.').map_or(text, |i| &text[..i]);
    let first = first.replace(',', "");
    first.split(' ').any(|w| w == "No" || w == "not" || w == "no")
}

/// One label file `coco_pope_<category>.json`.
#[derive(Clone, Debug)]
pub struct LabelFile {
    /// The category (`adversarial`, `popular`, `random`).
    pub category: String,
    /// The file.
    pub path: PathBuf,
    /// Labels in file order: `true` for yes (any label but `"no"`).
    pub labels: Vec<bool>,
}

/// Reads the annotation directory. Every entry must be named `coco_pope_<category>.json` (the
/// reference asserts this); each line must be a JSON object with a `label`. Sorted by category (the
/// reference takes `os.listdir` order). Errors name the file and line.
pub fn read_annotations(dir: &Path) -> Result<Vec<LabelFile>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        let Some(category) = name.strip_prefix("coco_pope_").and_then(|s| s.strip_suffix(".json")) else {
            return Err(Error::file(&path, "not a POPE label file: every entry of the annotation directory must be named coco_pope_<category>.json"));
        };
        let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let mut labels = Vec::new();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let v: serde_json::Value =
                serde_json::from_str(line).map_err(|e| Error::line(&path, i + 1, format!("malformed JSON: {e}")))?;
            let label = v.get("label").ok_or_else(|| Error::line(&path, i + 1, "missing field `label`"))?;
            labels.push(label.as_str() != Some("no"));
        }
        if labels.is_empty() {
            return Err(Error::file(&path, "no labels: the POPE label file is empty"));
        }
        out.push(LabelFile { category: category.to_string(), path, labels });
    }
    if out.is_empty() {
        return Err(Error::file(dir, "no POPE label files (coco_pope_<category>.json) in the annotation directory"));
    }
    out.sort_by(|a, b| a.category.cmp(&b.category));
    Ok(out)
}

/// Scores of one category.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CategoryScore {
    /// The category.
    pub category: String,
    /// Answers of this category (`# samples`).
    pub samples: usize,
    /// Pairs scored (`min(answers, labels)`).
    pub pairs: usize,
    /// True positives (yes/yes).
    pub tp: usize,
    /// False positives (yes/no).
    pub fp: usize,
    /// True negatives (no/no).
    pub tn: usize,
    /// False negatives (no/yes).
    #[serde(rename = "fn")]
    pub fn_: usize,
    /// (TP+TN)/pairs.
    pub accuracy: Option<f64>,
    /// TP/(TP+FP).
    pub precision: Option<f64>,
    /// TP/(TP+FN).
    pub recall: Option<f64>,
    /// 2·P·R/(P+R).
    pub f1: Option<f64>,
    /// Share of "yes" answers.
    pub yes_ratio: Option<f64>,
}

/// POPE result: one entry per label file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PopeResult {
    /// Per category, sorted by name.
    pub categories: Vec<CategoryScore>,
    /// Mean F1 over the categories (LLaVA-1.5's reported POPE number; `eval_pope.py` prints only the
    /// per-category values). `None` if any category's F1 is undefined.
    pub mean_f1: Option<f64>,
    /// Mean accuracy over the categories. `None` if any is undefined.
    pub mean_accuracy: Option<f64>,
}

fn div(a: f64, b: f64) -> Option<f64> {
    (b != 0.0).then(|| a / b)
}

fn score_category(category: &str, preds_yes: &[bool], labels: &[bool]) -> CategoryScore {
    let (mut tp, mut fp, mut tn, mut fn_) = (0, 0, 0, 0);
    for (&p, &l) in preds_yes.iter().zip(labels) {
        match (p, l) {
            (true, true) => tp += 1,
            (true, false) => fp += 1,
            (false, false) => tn += 1,
            (false, true) => fn_ += 1,
        }
    }
    let yes = preds_yes.iter().filter(|&&p| p).count();
    let precision = div(tp as f64, (tp + fp) as f64);
    let recall = div(tp as f64, (tp + fn_) as f64);
    let f1 = match (precision, recall) {
        (Some(p), Some(r)) => div(2.0 * p * r, p + r),
        _ => None,
    };
    CategoryScore {
        category: category.to_string(),
        samples: preds_yes.len(),
        pairs: tp + fp + tn + fn_,
        tp,
        fp,
        tn,
        fn_,
        accuracy: div((tp + tn) as f64, (tp + tn + fp + fn_) as f64),
        precision,
        recall,
        f1,
        yes_ratio: div(yes as f64, preds_yes.len() as f64),
    }
}

/// Scores `answers` (in answers-file order) against the label files. `questions` maps question ids
/// to their question line (for `category`; a repeated id keeps its last line, as the reference's
/// dict does). Errors: an answer whose question is not in the question file, or whose question has no
/// `category` (named by answers file and line).
pub fn score(
    answers: &[AnswerLine],
    answers_path: &Path,
    questions: &HashMap<QuestionId, Question>,
    labels: &[LabelFile],
) -> Result<PopeResult> {
    let mut cats = Vec::with_capacity(answers.len());
    for a in answers {
        let q = questions.get(&a.question_id).ok_or_else(|| {
            Error::line(answers_path, a.line, format!("question_id {} is not in the question file", a.question_id))
        })?;
        let c = q.category().ok_or_else(|| {
            Error::line(
                answers_path,
                a.line,
                format!("question {} has no string `category` in the question file", a.question_id),
            )
        })?;
        cats.push(c);
    }
    let categories: Vec<CategoryScore> = labels
        .iter()
        .map(|lf| {
            let preds: Vec<bool> =
                answers.iter().zip(&cats).filter(|(_, c)| **c == lf.category).map(|(a, _)| !is_no(&a.text)).collect();
            score_category(&lf.category, &preds, &lf.labels)
        })
        .collect();
    let mean = |f: fn(&CategoryScore) -> Option<f64>| -> Option<f64> {
        let v: Option<Vec<f64>> = categories.iter().map(f).collect();
        v.filter(|v| !v.is_empty()).map(|v| v.iter().sum::<f64>() / v.len() as f64)
    };
    Ok(PopeResult { mean_f1: mean(|c| c.f1), mean_accuracy: mean(|c| c.accuracy), categories })
}

impl PopeResult {
    /// A short text table (percentages).
    pub fn table(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .categories
            .iter()
            .map(|c| {
                vec![
                    c.category.clone(),
                    c.samples.to_string(),
                    table::pct(c.accuracy),
                    table::pct(c.precision),
                    table::pct(c.recall),
                    table::pct(c.f1),
                    table::pct(c.yes_ratio),
                ]
            })
            .chain(std::iter::once(vec![
                "mean".into(),
                String::new(),
                table::pct(self.mean_accuracy),
                String::new(),
                String::new(),
                table::pct(self.mean_f1),
                String::new(),
            ]))
            .collect();
        table::render(&["POPE category", "samples", "acc %", "precision %", "recall %", "F1 %", "yes %"], &rows)
    }
}

#[cfg(test)]
mod tests {
    use super::is_no;

    #[test]
    fn first_sentence_rule() {
        assert!(is_no("No, there is not."));
        assert!(is_no("There is not a dog."));
        assert!(!is_no("Yes. There is no cat."));
        assert!(!is_no("yes."));
        assert!(!is_no("NO"));
        assert!(is_no("No."));
        assert!(!is_no("Nope"));
        assert!(!is_no("No-one is there"));
    }
}

//! MME, scored as LLaVA does it: `convert_answer_to_mme.py` (LLaVA's `eval.zip`,
//! `playground/data/eval/MME/`) writes one `<task>.txt` per subtask with lines
//! `image<TAB>question<TAB>ground truth<TAB>answer`, then MME's official
//! `eval_tool/calculation.py` (`calculate_metrics.process_result`) scores them.
//!
//! * Subtask = `question_id.split('/')[0]`; ground-truth file = the id's last path part up to its
//!   first `.`, plus `.txt`.
//! * The prompt is turned back into MME's question ([`mme_question`]): the single-word suffix removed
//!   and the text stripped; ` Please answer yes or no.` appended if absent, with two spaces instead of
//!   one when that is what the ground-truth file has.
//! * Ground truth: `MME_Benchmark_release_version/<task>/` (`questions_answers_YN/` when the task has
//!   an `images/` folder), `*.txt` lines `question<TAB>Yes|No` ([`read_ground_truth`]).
//! * Lines of a subtask, in answers-file order, are taken two at a time (the two questions of one
//!   image); the answer is lower-cased and labelled yes/no/other by its first 4 characters
//!   ([`parse_answer`]; the line's newline is part of the answer when it is read back, so an exact
//!   `yes`/`no` never matches the first test).
//! * Per subtask: acc = correct / questions, acc+ = images with both right / images; score =
//!   100·acc + 100·acc+. Perception = sum over its 10 subtasks, cognition over its 4.
//!
//! The intermediate text file is reproduced exactly (including Python's newline translation when it is
//! read back), so answers containing tabs or line breaks are handled as the reference handles them:
//! the pairing breaks and scoring stops with an error.
use crate::error::{Error, Result};
use crate::formats::AnswerLine;
use crate::prompt::SHORT_ANSWER_SUFFIX;
use crate::pyjson;
use crate::table;
use serde::Serialize;
use std::collections::HashMap;
use std::fs;
use std::path::Path;

/// Perception subtasks, in `calculation.py`'s order.
pub const PERCEPTION: [&str; 10] =
    ["existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork", "OCR"];
/// Cognition subtasks, in `calculation.py`'s order.
pub const COGNITION: [&str; 4] =
    ["commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning"];

const YES_NO: &str = "Please answer yes or no.";

/// Ground truth keyed by `(task, file, question)`, value `Yes`/`No` as written in the file.
pub type GroundTruth = HashMap<(String, String, String), String>;

/// Python's universal-newline reading: `\r\n` and `\r` become `\n`; lines keep their `\n`.
fn python_lines(text: &str) -> Vec<String> {
    let t = text.replace("\r\n", "\n").replace('\r', "\n");
    t.split_inclusive('\n').map(str::to_string).collect()
}

/// Reads MME's `MME_Benchmark_release_version` directory (see the module docs). Errors name the file
/// and line of a line that is not `question<TAB>answer`.
pub fn read_ground_truth(dir: &Path) -> Result<GroundTruth> {
    let mut gt = GroundTruth::new();
    for entry in fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        let cat_dir = entry.path();
        if !cat_dir.is_dir() {
            continue;
        }
        let category = entry.file_name().to_string_lossy().into_owned();
        let qa_dir =
            if cat_dir.join("images").exists() { cat_dir.join("questions_answers_YN") } else { cat_dir.clone() };
        if !qa_dir.is_dir() {
            return Err(Error::file(
                &qa_dir,
                "missing: a task with an images/ folder keeps its questions in questions_answers_YN/",
            ));
        }
        for f in fs::read_dir(&qa_dir).map_err(|e| Error::io(&qa_dir, e))? {
            let f = f.map_err(|e| Error::io(&qa_dir, e))?;
            let name = f.file_name().to_string_lossy().into_owned();
            if !name.ends_with(".txt") {
                continue;
            }
            let path = f.path();
            let text = fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
            for (i, line) in python_lines(&text).iter().enumerate() {
                let parts: Vec<&str> = pyjson::strip(line).split('\t').collect();
                let [question, answer] = parts[..] else {
                    return Err(Error::line(&path, i + 1, "expected `question<TAB>answer`"));
                };
                gt.insert((category.clone(), name.clone(), question.to_string()), answer.to_string());
            }
        }
    }
    if gt.is_empty() {
        return Err(Error::file(
            dir,
            "no MME ground truth: no <task>/*.txt question files with `question<TAB>answer` lines",
        ));
    }
    Ok(gt)
}

/// `(task, ground-truth file name)` of an MME question id such as `count/000000.png` or
/// `artwork/images/10002.jpg`.
pub fn task_and_file(question_id: &str) -> (String, String) {
    let task = question_id.split('/').next().unwrap_or("").to_string();
    let last = question_id.rsplit('/').next().unwrap_or("");
    let stem = last.split('.').next().unwrap_or("");
    (task, format!("{stem}.txt"))
}

/// The MME question for an answer's prompt, as `convert_answer_to_mme.py` rebuilds it (module docs).
pub fn mme_question(prompt: &str, task: &str, file: &str, gt: &GroundTruth) -> String {
    let mut p = prompt.to_string();
    if p.contains(SHORT_ANSWER_SUFFIX) {
        p = pyjson::strip(&p.replace(SHORT_ANSWER_SUFFIX, "")).to_string();
    }
    if !p.contains(YES_NO) {
        p = format!("{p} {YES_NO}");
        if !gt.contains_key(&(task.to_string(), file.to_string(), p.clone())) {
            p = p.replace(&format!(" {YES_NO}"), &format!("  {YES_NO}"));
        }
    }
    p
}

/// `calculate_metrics.parse_pred_ans` on a lower-cased answer: `yes`/`no` if it is exactly that,
/// else `yes` if its first 4 characters contain `yes`, else `no` if they contain `no`, else `other`.
pub fn parse_answer(lower: &str) -> &'static str {
    match lower {
        "yes" => "yes",
        "no" => "no",
        _ => {
            let prefix: String = lower.chars().take(4).collect();
            if prefix.contains("yes") {
                "yes"
            } else if prefix.contains("no") {
                "no"
            } else {
                "other"
            }
        }
    }
}

/// One subtask's scores.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TaskScore {
    /// Subtask name.
    pub task: String,
    /// `Perception` or `Cognition`.
    pub eval_type: String,
    /// Questions.
    pub questions: usize,
    /// Images (question pairs).
    pub images: usize,
    /// Fraction of questions right.
    pub acc: f64,
    /// Fraction of images with both questions right.
    pub acc_plus: f64,
    /// 100·acc + 100·acc+.
    pub score: f64,
    /// Answers labelled neither yes nor no.
    pub other: usize,
}

/// MME result.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MmeResult {
    /// Sum of the perception subtask scores (`None` if a perception subtask has no answers, where
    /// `calculation.py` stops for the missing file).
    pub perception: Option<f64>,
    /// Sum of the cognition subtask scores (`None` likewise).
    pub cognition: Option<f64>,
    /// Subtasks with answers, in `calculation.py`'s order.
    pub tasks: Vec<TaskScore>,
    /// Subtasks of the two lists without answers.
    pub missing_tasks: Vec<String>,
}

fn score_task(task: &str, eval_type: &str, content: &str, answers_path: &Path) -> Result<TaskScore> {
    let lines = python_lines(content);
    let bad = |m: String| Error::file(answers_path, format!("MME task {task}: {m}"));
    let (mut right, mut other, mut plus) = (0usize, 0usize, 0usize);
    let chunks: Vec<&[String]> = lines.chunks(2).collect();
    for (i, pair) in chunks.iter().enumerate() {
        if pair.len() != 2 {
            return Err(bad(format!(
                "odd number of answer lines ({}); MME scores the two questions of each image together (calculation.py asserts pairs)",
                lines.len()
            )));
        }
        let mut img_right = 0;
        for line in pair.iter() {
            let parts: Vec<&str> = line.split('\t').collect();
            let [_, _, gt, pred] = parts[..] else {
                return Err(bad(format!(
                    "image {} of the task: a prompt or answer contains a tab or a line break, which breaks calculation.py's tab-separated lines",
                    i + 1
                )));
            };
            let gt = gt.to_lowercase();
            if gt != "yes" && gt != "no" {
                return Err(bad(format!("ground truth {gt:?} is neither yes nor no")));
            }
            let pred = parse_answer(&pred.to_lowercase());
            if pred == gt {
                img_right += 1;
                right += 1;
            }
            if pred == "other" {
                other += 1;
            }
        }
        if img_right == 2 {
            plus += 1;
        }
    }
    let acc = right as f64 / lines.len() as f64;
    let acc_plus = plus as f64 / chunks.len() as f64;
    Ok(TaskScore {
        task: task.to_string(),
        eval_type: eval_type.to_string(),
        questions: lines.len(),
        images: chunks.len(),
        acc,
        acc_plus,
        score: acc * 100.0 + acc_plus * 100.0,
        other,
    })
}

/// Scores answers (in answers-file order). Errors: a non-string question id or one whose task, file
/// or question is not in the ground truth (answers file and line named); a subtask with an odd number
/// of answers or a broken line (see the module docs).
pub fn score(answers: &[AnswerLine], answers_path: &Path, gt: &GroundTruth) -> Result<MmeResult> {
    let mut contents: HashMap<String, String> = HashMap::new();
    for a in answers {
        let qid = a
            .question_id
            .as_str()
            .ok_or_else(|| Error::line(answers_path, a.line, "MME question ids are strings (task/image)"))?;
        let (task, file) = task_and_file(qid);
        let q = mme_question(&a.prompt, &task, &file, gt);
        let g = gt.get(&(task.clone(), file.clone(), q.clone())).ok_or_else(|| {
            Error::line(
                answers_path,
                a.line,
                format!("no MME ground truth for task {task:?}, file {file:?}, question {q:?}"),
            )
        })?;
        let s = contents.entry(task).or_default();
        s.push_str(&[file.as_str(), q.as_str(), g.as_str(), a.text.as_str()].join("\t"));
        s.push('\n');
    }
    let mut tasks = Vec::new();
    let mut missing_tasks = Vec::new();
    let mut totals = [Some(0.0f64), Some(0.0f64)];
    for (k, (eval_type, list)) in
        [("Perception", &PERCEPTION[..]), ("Cognition", &COGNITION[..])].into_iter().enumerate()
    {
        for task in list {
            match contents.get(*task) {
                Some(c) => {
                    let t = score_task(task, eval_type, c, answers_path)?;
                    totals[k] = totals[k].map(|s| s + t.score);
                    tasks.push(t);
                }
                None => {
                    missing_tasks.push(task.to_string());
                    totals[k] = None;
                }
            }
        }
    }
    Ok(MmeResult { perception: totals[0], cognition: totals[1], tasks, missing_tasks })
}

impl MmeResult {
    /// A short text table.
    pub fn table(&self) -> String {
        let mut rows: Vec<Vec<String>> = self
            .tasks
            .iter()
            .map(|t| {
                vec![
                    t.task.clone(),
                    t.eval_type.clone(),
                    t.questions.to_string(),
                    format!("{:.2}", 100.0 * t.acc),
                    format!("{:.2}", 100.0 * t.acc_plus),
                    format!("{:.2}", t.score),
                ]
            })
            .collect();
        for m in &self.missing_tasks {
            rows.push(vec![m.clone(), String::new(), "0".into(), "-".into(), "-".into(), "-".into()]);
        }
        rows.push(vec![
            "perception".into(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            table::num(self.perception),
        ]);
        rows.push(vec![
            "cognition".into(),
            String::new(),
            String::new(),
            String::new(),
            String::new(),
            table::num(self.cognition),
        ]);
        table::render(&["MME task", "type", "questions", "acc %", "acc+ %", "score"], &rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answer_labels() {
        assert_eq!(parse_answer("yes\n"), "yes");
        assert_eq!(parse_answer("no, it is not\n"), "no");
        assert_eq!(parse_answer("snow\n"), "no");
        assert_eq!(parse_answer("there is\n"), "other");
        assert_eq!(task_and_file("artwork/images/10002.jpg"), ("artwork".into(), "10002.txt".into()));
    }
}

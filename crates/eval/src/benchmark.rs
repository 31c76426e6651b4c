//! One entry point over the five scorers: which benchmark, where its ground truth is, the result
//! (JSON + table) and the one number a scaling law reads from it ([`Scores::headline`]).
use crate::error::{Error, LineIssue, Result};
use crate::formats::{read_answers, read_questions, AnswerLine, QuestionId};
use crate::{gqa, mme, pope, scienceqa, textvqa};
use serde::Serialize;
use std::collections::HashMap;
use std::path::Path;

/// Benchmarks with a reference scorer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[serde(rename_all = "lowercase")]
pub enum Benchmark {
    /// POPE (object hallucination): accuracy, precision, recall, F1, yes-ratio per category.
    Pope,
    /// GQA: exact-match accuracy over balanced questions.
    Gqa,
    /// ScienceQA: option-letter accuracy (all and with an image).
    Scienceqa,
    /// TextVQA: VQA accuracy with the m4c answer normalisation.
    Textvqa,
    /// MME: per-subtask acc and acc+, perception and cognition totals.
    Mme,
}

impl Benchmark {
    /// The lower-case name (`pope`, `gqa`, …), also the `task` of an eval-grid's scores CSV.
    pub fn name(&self) -> &'static str {
        match self {
            Benchmark::Pope => "pope",
            Benchmark::Gqa => "gqa",
            Benchmark::Scienceqa => "scienceqa",
            Benchmark::Textvqa => "textvqa",
            Benchmark::Mme => "mme",
        }
    }

    /// Parses [`Benchmark::name`]. Errors: an unknown name (a message listing the known ones).
    pub fn from_name(s: &str) -> std::result::Result<Self, String> {
        [Benchmark::Pope, Benchmark::Gqa, Benchmark::Scienceqa, Benchmark::Textvqa, Benchmark::Mme]
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| format!("unknown benchmark `{s}` (pope, gqa, scienceqa, textvqa, mme)"))
    }
}

/// A scorer's result.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Scores {
    /// POPE.
    Pope(pope::PopeResult),
    /// GQA.
    Gqa(gqa::GqaResult),
    /// ScienceQA.
    Scienceqa(scienceqa::SqaResult),
    /// TextVQA.
    Textvqa(textvqa::TextVqaResult),
    /// MME.
    Mme(mme::MmeResult),
}

/// Full marks of one MME subtask: acc + acc+, each out of 100 (`calculation.py`).
const MME_TASK_MAX: f64 = 200.0;

impl Scores {
    /// The short text table.
    pub fn table(&self) -> String {
        match self {
            Scores::Pope(r) => r.table(),
            Scores::Gqa(r) => r.table(),
            Scores::Scienceqa(r) => r.table(),
            Scores::Textvqa(r) => r.table(),
            Scores::Mme(r) => r.table(),
        }
    }

    /// The benchmark's usual single number as a fraction in [0, 1], the `score` of a scaling-law
    /// row: POPE mean F1 over the categories (LLaVA-1.5's reported POPE number), GQA accuracy,
    /// ScienceQA accuracy over all problems, TextVQA VQA accuracy, MME (perception + cognition) over
    /// the full marks of the subtasks answered (200 each). `None` where the number is undefined
    /// (POPE with a category whose F1 is undefined, MME without answers).
    pub fn headline(&self) -> Option<f64> {
        match self {
            Scores::Pope(r) => r.mean_f1,
            // GQA's and ScienceQA's scripts report percentages.
            Scores::Gqa(r) => Some(r.accuracy / 100.0),
            Scores::Scienceqa(r) => Some(r.accuracy / 100.0),
            Scores::Textvqa(r) => Some(r.accuracy),
            Scores::Mme(r) => {
                let total: f64 = r.tasks.iter().map(|t| t.score).sum();
                (!r.tasks.is_empty()).then(|| total / (MME_TASK_MAX * r.tasks.len() as f64))
            }
        }
    }
}

/// Where a benchmark's ground truth is (see [`score_file`]).
#[derive(Clone, Debug)]
pub struct GroundTruth<'a> {
    /// POPE: the `coco_pope_<category>.json` folder; GQA: the questions JSON; ScienceQA: the folder
    /// of `problems.json` and `pid_splits.json`; TextVQA: `TextVQA_0.5.1_val.json`; MME: the
    /// `MME_Benchmark_release_version` folder.
    pub annotations: &'a Path,
    /// POPE: the question file the answers were generated from (each question's `category`).
    pub questions: Option<&'a Path>,
    /// ScienceQA: the split of `pid_splits.json`.
    pub split: &'a str,
}

/// Scores the answers file `answers` of `benchmark` with the reference rules.
///
/// Errors: a malformed or empty answers file, unreadable ground truth, a POPE question file with a
/// bad line, an id missing from the ground truth (each naming file and line); POPE without
/// `questions` ([`Error::File`] naming the answers file).
pub fn score_file(benchmark: Benchmark, answers: &Path, truth: &GroundTruth) -> Result<Scores> {
    score_file_checked(benchmark, answers, truth).map(|(scores, _)| scores)
}

/// [`score_file`], also returning the answer lines the reference scorer ignores because their
/// `question_id` is not in the ground truth (GQA: not a key of the questions file, `eval.py` only
/// looks answers up by question; ScienceQA: not a problem of the split, `eval_science_qa.py` does
/// the same). The scores are the reference's either way; each issue names the answers file and
/// line. POPE, TextVQA and MME make such a line an error instead (see [`score_file`]).
///
/// Errors: those of [`score_file`].
pub fn score_file_checked(
    benchmark: Benchmark,
    answers: &Path,
    truth: &GroundTruth,
) -> Result<(Scores, Vec<LineIssue>)> {
    let lines = read_answers(answers)?;
    let ignored = |known: &dyn Fn(&QuestionId) -> bool, what: String| -> Vec<LineIssue> {
        lines
            .iter()
            .filter(|a: &&AnswerLine| !known(&a.question_id))
            .map(|a| LineIssue {
                path: answers.to_path_buf(),
                line: a.line,
                message: format!("question_id {} {what} (answer ignored, as the reference scorer does)", a.question_id),
            })
            .collect()
    };
    let mut issues = Vec::new();
    let scores = match benchmark {
        Benchmark::Pope => {
            let qpath = truth.questions.ok_or_else(|| Error::File {
                path: answers.to_path_buf(),
                message: "POPE scoring needs the question file (each question's category)".into(),
            })?;
            let loaded = read_questions(qpath)?;
            if let Some(bad) = loaded.skipped.first() {
                return Err(Error::Line { path: bad.path.clone(), line: bad.line, message: bad.message.clone() });
            }
            if loaded.items.is_empty() {
                return Err(Error::file(qpath, "no questions"));
            }
            let questions: HashMap<_, _> = loaded.items.into_iter().map(|q| (q.question_id.clone(), q)).collect();
            let labels = pope::read_annotations(truth.annotations)?;
            Scores::Pope(pope::score(&lines, answers, &questions, &labels)?)
        }
        Benchmark::Gqa => {
            let questions = gqa::read_questions(truth.annotations)?;
            let ids: std::collections::HashSet<&str> = questions.iter().map(|(id, _)| id.as_str()).collect();
            let known = |q: &QuestionId| matches!(q, QuestionId::Str(id) if ids.contains(id.as_str()));
            issues = ignored(&known, format!("is not a question of {}", truth.annotations.display()));
            Scores::Gqa(gqa::score(&lines, answers, &questions)?)
        }
        Benchmark::Scienceqa => {
            let problems = scienceqa::read_problems(truth.annotations, truth.split)?;
            let ids: std::collections::HashSet<&str> = problems.iter().map(|(id, _)| id.as_str()).collect();
            let known = |q: &QuestionId| matches!(q, QuestionId::Str(id) if ids.contains(id.as_str()));
            let what = format!("is not a problem of the `{}` split in {}", truth.split, truth.annotations.display());
            issues = ignored(&known, what);
            Scores::Scienceqa(scienceqa::score(&lines, &problems))
        }
        Benchmark::Textvqa => {
            Scores::Textvqa(textvqa::score(&lines, answers, &textvqa::read_annotations(truth.annotations)?)?)
        }
        Benchmark::Mme => Scores::Mme(mme::score(&lines, answers, &mme::read_ground_truth(truth.annotations)?)?),
    };
    Ok((scores, issues))
}

//! `vlmscale score`: score a LLaVA answers file with the reference rules of a benchmark.
use anyhow::Result;
use eval::{gqa, mme, pope, read_answers, read_questions, scienceqa, textvqa, Error};
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Score an answers JSONL file (LLaVA's `model_vqa_loader.py` format) as LLaVA-1.5's evaluation
/// does: POPE (`eval_pope.py`), GQA (`convert_gqa_for_eval.py` + GQA's `eval.py`), ScienceQA
/// (`eval_science_qa.py`), TextVQA (`eval_textvqa.py`, m4c normalisation), MME
/// (`convert_answer_to_mme.py` + MME's `calculation.py`). Prints a table; --json writes the result.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
--annotations per benchmark:
  pope       directory of coco_pope_<category>.json label files (also --questions llava_pope_test.jsonl)
  gqa        GQA questions file, e.g. testdev_balanced_questions.json
  scienceqa  directory holding problems.json and pid_splits.json (--split, default test)
  textvqa    TextVQA_0.5.1_val.json
  mme        MME_Benchmark_release_version directory

Examples:
  vlmscale score pope --answers pope.jsonl --annotations pope/coco --questions llava_pope_test.jsonl
  vlmscale score gqa --answers gqa.jsonl --annotations testdev_balanced_questions.json --json gqa.json")]
pub struct Args {
    /// The benchmark whose rules apply.
    #[arg(value_enum)]
    pub benchmark: Benchmark,
    /// Answers JSONL file (`{"question_id", "prompt", "text", ...}` per line).
    #[arg(long, value_name = "A.jsonl")]
    pub answers: PathBuf,
    /// Ground truth (see below).
    #[arg(long, value_name = "PATH")]
    pub annotations: PathBuf,
    /// POPE: the question file the answers were generated from (for each question's `category`).
    #[arg(long, value_name = "Q.jsonl")]
    pub questions: Option<PathBuf>,
    /// ScienceQA: the split of pid_splits.json.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Write the result as JSON to this file.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
}

/// Benchmarks with a reference scorer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
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

#[derive(Serialize)]
#[serde(untagged)]
enum Scores {
    Pope(pope::PopeResult),
    Gqa(gqa::GqaResult),
    Scienceqa(scienceqa::SqaResult),
    Textvqa(textvqa::TextVqaResult),
    Mme(mme::MmeResult),
}

#[derive(Serialize)]
struct Report<'a> {
    benchmark: Benchmark,
    answers: &'a Path,
    annotations: &'a Path,
    scores: &'a Scores,
}

pub fn run(a: Args) -> Result<()> {
    let answers = read_answers(&a.answers)?;
    let scores = match a.benchmark {
        Benchmark::Pope => {
            let qpath = a.questions.as_deref().ok_or_else(|| {
                super::UsageError("pope needs --questions (the question file with each question's category)".into())
            })?;
            let loaded = read_questions(qpath)?;
            if let Some(bad) = loaded.skipped.first() {
                return Err(Error::Line { path: bad.path.clone(), line: bad.line, message: bad.message.clone() }.into());
            }
            let questions: HashMap<_, _> = loaded.items.into_iter().map(|q| (q.question_id.clone(), q)).collect();
            let labels = pope::read_annotations(&a.annotations)?;
            Scores::Pope(pope::score(&answers, &a.answers, &questions, &labels)?)
        }
        Benchmark::Gqa => Scores::Gqa(gqa::score(&answers, &a.answers, &gqa::read_questions(&a.annotations)?)?),
        Benchmark::Scienceqa => {
            Scores::Scienceqa(scienceqa::score(&answers, &scienceqa::read_problems(&a.annotations, &a.split)?))
        }
        Benchmark::Textvqa => {
            Scores::Textvqa(textvqa::score(&answers, &a.answers, &textvqa::read_annotations(&a.annotations)?)?)
        }
        Benchmark::Mme => Scores::Mme(mme::score(&answers, &a.answers, &mme::read_ground_truth(&a.annotations)?)?),
    };
    if let Some(out) = &a.json {
        let report =
            Report { benchmark: a.benchmark, answers: &a.answers, annotations: &a.annotations, scores: &scores };
        let json = serde_json::to_string_pretty(&report)?;
        scaling::output::write_atomic(out, format!("{json}\n").as_bytes())?;
    }
    let table = match &scores {
        Scores::Pope(r) => r.table(),
        Scores::Gqa(r) => r.table(),
        Scores::Scienceqa(r) => r.table(),
        Scores::Textvqa(r) => r.table(),
        Scores::Mme(r) => r.table(),
    };
    print!("{table}");
    Ok(())
}

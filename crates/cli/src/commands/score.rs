//! `vlmscale score`: score a LLaVA answers file with the reference rules of a benchmark.
use anyhow::Result;
use eval::benchmark::{score_file_checked, Benchmark, GroundTruth, Scores};
use serde::Serialize;
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

#[derive(Serialize)]
struct Report<'a> {
    benchmark: Benchmark,
    answers: &'a Path,
    annotations: &'a Path,
    scores: &'a Scores,
}

pub fn run(a: Args) -> Result<()> {
    if a.benchmark == Benchmark::Pope && a.questions.is_none() {
        return Err(super::UsageError(
            "pope needs --questions (the question file with each question's category)".into(),
        )
        .into());
    }
    let truth = GroundTruth { annotations: &a.annotations, questions: a.questions.as_deref(), split: &a.split };
    let (scores, ignored) = score_file_checked(a.benchmark, &a.answers, &truth)?;
    const SHOWN: usize = 20;
    for issue in ignored.iter().take(SHOWN) {
        eprintln!("warning: {issue}");
    }
    if ignored.len() > SHOWN {
        eprintln!("warning: {} more answers ignored for the same reason", ignored.len() - SHOWN);
    }
    if let Some(out) = &a.json {
        let report =
            Report { benchmark: a.benchmark, answers: &a.answers, annotations: &a.annotations, scores: &scores };
        let json = serde_json::to_string_pretty(&report)?;
        scaling::output::write_atomic(out, format!("{json}\n").as_bytes())?;
    }
    print!("{}", scores.table());
    Ok(())
}

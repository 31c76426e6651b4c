//! `vlmscale`: pick an LLM size and a visual-token budget for a VLM deployment (scaling laws, cost
//! models, compute-optimal frontier), after *Inference Optimal VLMs Need Fewer Visual Tokens and More
//! Parameters* (Li, Goyal, Semedo, Kolter; arXiv 2411.03312).
//!
//! A thin binary: every command parses its arguments and calls the library crates.
mod commands;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// vlmscale — inference-optimal vision-language models.
///
/// Start with `vlmscale fit`: it re-derives the paper's scaling law from the paper's own published
/// scores (embedded), with the compute-optimal configuration for a budget coming from `frontier`.
#[derive(Parser)]
#[command(name = "vlmscale", version, about, long_about = None, after_help = "\
Examples:
  vlmscale fit                                   # the paper's law from its published scores
  vlmscale fit --task ocr                        # the OCR-like tasks
  vlmscale fit --data my_scores.csv --task reasoning --json > fit.json
  vlmscale frontier --text-tokens 50 --budget 1e12
  vlmscale flops --llm-params 7e9 --visual-tokens 16 --text-tokens 50 --exact
  vlmscale plot --out-dir plots
  vlmscale reproduce --quick                     # the paper's experiment, small, ~1 minute
  vlmscale bench fit")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fit the scaling law Y = A·N^-α·T^-β + D to scores (default: the paper's published scores).
    Fit(commands::fit::Args),
    /// Compute-optimal (N, V) under an inference budget.
    Frontier(commands::frontier::Args),
    /// Inference FLOPs of one query: the paper's 2·N·(Q+V) or an exact per-term breakdown.
    Flops(commands::flops::Args),
    /// Draw the paper's Figure 1 (error vs inference FLOPs, per N, with the frontier) as PNG and SVG.
    Plot(commands::plot::Args),
    /// Generated benchmarks for training small VLMs (Sort-of-CLEVR, fine-detail digits).
    #[command(subcommand)]
    Data(commands::data::Data),
    /// Train small VLMs on generated data on this CPU (vision tower, then compressor + projector + LLM).
    #[command(subcommand)]
    Train(commands::train::Train),
    /// Answer a LLaVA question file with a checkpoint (--questions; resumable, LLaVA's answer format),
    /// or score a generated held-out split (--data; exact match per question family).
    Eval(commands::eval::Args),
    /// Evaluate checkpoints over visual-token budgets on a LLaVA benchmark: (model, V) cells, scored,
    /// into the scores CSV that `fit --data` reads (resumable, parallel, --emit-slurm).
    EvalGrid(commands::eval_grid::Args),
    /// Score a LLaVA answers file with a benchmark's reference rules (POPE, GQA, ScienceQA, TextVQA, MME).
    Score(commands::score::Args),
    /// Benchmarks (speed, with the peer's figure from the same run).
    #[command(subcommand)]
    Bench(commands::bench::Bench),
    /// Answer a question about an image with a LLaVA-layout checkpoint (streams the answer, then timings).
    Generate(commands::generate::Args),
    /// Serve checkpoints over an OpenAI-compatible HTTP API; each request may choose V or a budget.
    Serve(commands::serve::Args),
    /// Describe a LLaVA-layout checkpoint: architecture, N, V, compressor, projector, FLOPs of one query.
    Inspect(commands::inspect::Args),
    /// The paper's grid sweep (N × V × compressor × task): run, resume, emit for Slurm, aggregate, report.
    Sweep(commands::sweep::Args),
    /// The paper's experiment end to end: train the default (or --quick) grid, fit the law per task,
    /// frontier, and a report of which claims reproduced (resumable).
    Reproduce(commands::reproduce::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Fit(a) => commands::fit::run(a),
        Command::Frontier(a) => commands::frontier::run(a),
        Command::Flops(a) => commands::flops::run(a),
        Command::Plot(a) => commands::plot::run(a),
        Command::Data(d) => commands::data::run(d),
        Command::Train(t) => commands::train::run(t),
        Command::Eval(a) => commands::eval::run(a),
        Command::EvalGrid(a) => commands::eval_grid::run(a),
        Command::Score(a) => commands::score::run(a),
        Command::Bench(b) => commands::bench::run(b),
        Command::Generate(a) => commands::generate::run(a),
        Command::Inspect(a) => commands::inspect::run(a),
        Command::Serve(a) => commands::serve::run(a),
        Command::Sweep(a) => commands::sweep::run(a),
        Command::Reproduce(a) => commands::reproduce::run(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", commands::message(&e));
            ExitCode::from(commands::exit_code(&e))
        }
    }
}

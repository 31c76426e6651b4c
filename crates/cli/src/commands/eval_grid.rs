//! `vlmscale eval-grid`: every (checkpoint, V) cell answers and scores one benchmark, through the
//! sweep crate's cell machinery (crate `eval`, module `grid`); the scores CSV it writes is the input of
//! `vlmscale fit --data` and `frontier`.
use super::eval::ConvMode;
use super::UsageError;
use anyhow::Result;
use engine::text::Template;
use eval::benchmark::Benchmark;
use eval::generation::DEFAULT_MAX_NEW_TOKENS;
use eval::grid::{Grid, GridError, GridSpec};
use eval::reduction::TokenReduction;
use std::path::PathBuf;

/// Evaluate checkpoints over visual-token budgets on a LLaVA benchmark and write the scores CSV.
#[derive(clap::Args, Debug)]
#[command(after_help = "\
Cells are (checkpoint, V) pairs; a checkpoint is run only at the V its --token-reduction can produce
(avgpool: checkpoints without a compressor, V a square whose side divides the patch grid; trained: the
checkpoint's own V), the others are listed and left out. Each cell writes
<out>/cells/<id>/answers.jsonl (resumable) and <out>/cells/<id>.json (its score); finished cells are
skipped on rerun. <out>/aggregate.csv has the columns llm_params (billions), visual_tokens,
text_tokens, score (the benchmark's headline number as a fraction), task (the benchmark) and compressor
(the reduction method).

Examples:
  vlmscale eval-grid --models ckpt-0.5b,ckpt-1.8b,ckpt-7b --visual-tokens 1,4,16,64,576 \\
      --benchmark pope --questions llava_pope_test.jsonl --image-folder val2014 \\
      --annotations pope/coco --out grid-pope --jobs 2
  vlmscale fit --data grid-pope/aggregate.csv --task pope
  vlmscale eval-grid ... --emit-slurm slurm/    # one array task per cell, then the aggregate")]
pub struct Args {
    /// Checkpoint directories, comma-separated: one per LLM size N, or with `--token-reduction trained`
    /// one per (N, V) (several of one N that were trained at different V).
    #[arg(long, value_name = "DIR,DIR,...", value_delimiter = ',', required = true)]
    pub models: Vec<PathBuf>,
    /// Visual-token budgets V, comma-separated.
    #[arg(long, value_name = "V,V,...", value_delimiter = ',', required = true)]
    pub visual_tokens: Vec<u64>,
    /// How each checkpoint is made to read V tokens.
    #[arg(long, value_enum, default_value_t = TokenReduction::Avgpool)]
    pub token_reduction: TokenReduction,
    /// FastV's layer K (`--token-reduction fastv`): layers 0..K see every image token, layers ≥ K the V kept.
    #[arg(long, value_name = "K", default_value_t = models::reduction::DEFAULT_FASTV_LAYER)]
    pub fastv_layer: usize,
    /// The benchmark (scorer; `task` of the CSV rows).
    #[arg(long, value_enum)]
    pub benchmark: Benchmark,
    /// The question file (LLaVA JSONL, or ScienceQA's JSON array).
    #[arg(long, value_name = "Q.jsonl")]
    pub questions: PathBuf,
    /// Folder the questions' images are relative to.
    #[arg(long, value_name = "DIR")]
    pub image_folder: PathBuf,
    /// The scorer's ground truth, as for `vlmscale score` (POPE: the coco_pope_*.json folder; GQA:
    /// the questions JSON; ScienceQA: the folder of problems.json and pid_splits.json; TextVQA:
    /// TextVQA_0.5.1_val.json; MME: the MME_Benchmark_release_version folder).
    #[arg(long, value_name = "PATH")]
    pub annotations: PathBuf,
    /// ScienceQA: the split of pid_splits.json.
    #[arg(long, default_value = "test")]
    pub split: String,
    /// Conversation template (default: by LLM family).
    #[arg(long, value_enum)]
    pub conv_mode: Option<ConvMode>,
    /// Maximum new tokens per answer.
    #[arg(long, default_value_t = DEFAULT_MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// ScienceQA's --single-pred-prompt.
    #[arg(long)]
    pub single_pred_prompt: bool,
    /// Results folder.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Seed of the answer ids (answers files are reproducible).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Cells run at once.
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Compute threads of the pool the cells share (default: all cores, or RAYON_NUM_THREADS).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run only the cell with this index (a Slurm array task); skipped if it has finished.
    #[arg(long, conflicts_with_all = ["aggregate", "emit_slurm", "list"])]
    pub index: Option<usize>,
    /// Only write <out>/aggregate.csv from the finished cells.
    #[arg(long, conflicts_with_all = ["emit_slurm", "list"])]
    pub aggregate: bool,
    /// Only list the cells (index, id, done) and the excluded (checkpoint, V) pairs.
    #[arg(long, conflicts_with = "emit_slurm")]
    pub list: bool,
    /// Do not run: write an sbatch job array (one task per cell), a dependent aggregate job and
    /// submit.sh into DIR.
    #[arg(long, value_name = "DIR")]
    pub emit_slurm: Option<PathBuf>,
}

fn grid_err(e: GridError) -> anyhow::Error {
    if e.is_user_error() {
        UsageError(e.to_string()).into()
    } else {
        e.into()
    }
}

fn abs(p: &std::path::Path) -> Result<PathBuf> {
    Ok(std::path::absolute(p)?)
}

/// The arguments that define the grid, for the Slurm scripts (absolute paths).
fn grid_args(a: &Args) -> Result<Vec<String>> {
    let join = |v: Vec<String>| v.join(",");
    let mut out = vec![
        "eval-grid".to_string(),
        "--models".into(),
        join(a.models.iter().map(|m| abs(m).map(|p| p.display().to_string())).collect::<Result<_>>()?),
        "--visual-tokens".into(),
        join(a.visual_tokens.iter().map(u64::to_string).collect()),
        "--token-reduction".into(),
        a.token_reduction.name().into(),
        "--fastv-layer".into(),
        a.fastv_layer.to_string(),
        "--benchmark".into(),
        a.benchmark.name().into(),
        "--questions".into(),
        abs(&a.questions)?.display().to_string(),
        "--image-folder".into(),
        abs(&a.image_folder)?.display().to_string(),
        "--annotations".into(),
        abs(&a.annotations)?.display().to_string(),
        "--split".into(),
        a.split.clone(),
        "--max-new-tokens".into(),
        a.max_new_tokens.to_string(),
        "--out".into(),
        abs(&a.out)?.display().to_string(),
        "--seed".into(),
        a.seed.to_string(),
    ];
    if let Some(c) = a.conv_mode {
        out.extend(["--conv-mode".into(), Template::from(c).name().into()]);
    }
    if a.single_pred_prompt {
        out.push("--single-pred-prompt".into());
    }
    Ok(out)
}

pub fn run(a: Args) -> Result<()> {
    if a.jobs == 0 {
        return Err(UsageError("--jobs must be at least 1".into()).into());
    }
    // One compute pool for the process, all cores by default: every cell's forward pass runs on it
    // (`kernels::threads::in_pool`), so cells running at once share it rather than split it.
    super::sweep::set_threads(a.threads, 1)?;
    super::prepare_inference();
    let spec = GridSpec {
        models: a.models.iter().map(|m| abs(m)).collect::<Result<_>>()?,
        visual_tokens: a.visual_tokens.clone(),
        reduction: a.token_reduction,
        fastv_layer: a.fastv_layer,
        benchmark: a.benchmark,
        questions: abs(&a.questions)?,
        image_folder: abs(&a.image_folder)?,
        annotations: abs(&a.annotations)?,
        split: a.split.clone(),
        conv_mode: a.conv_mode.map(Template::from),
        max_new_tokens: a.max_new_tokens,
        single_pred: a.single_pred_prompt,
        out: abs(&a.out)?,
        seed: a.seed,
    };
    let grid = Grid::plan(spec).map_err(grid_err)?;
    for m in &grid.models {
        for (v, why) in &m.excluded {
            eprintln!("left out {} at V = {v}: {why}", m.name);
        }
    }
    let cfg = &grid.config;
    let runner = grid.runner();
    if a.list {
        for c in cfg.cells() {
            let done = matches!(sweep::runner::read_result(&cfg.cells_dir(), &c), Ok(Some(_)));
            println!("{:>4}  {}  {}", c.index, c.id, if done { "done" } else { "-" });
        }
        return Ok(());
    }
    if let Some(dir) = &a.emit_slurm {
        let q = |v: Vec<String>| v.iter().map(|s| sweep::slurm::shell_quote(s)).collect::<Vec<_>>().join(" ");
        let args = grid_args(&a)?;
        let jobs = sweep::slurm::SlurmJobs {
            name: "eval-grid".into(),
            cells: cfg.cells().len(),
            cell_args: q(args.clone()),
            list_hint: "`vlmscale eval-grid … --list`".into(),
            final_args: vec![q([args, vec!["--aggregate".into()]].concat())],
            final_what: "aggregate the cells into the scores CSV".into(),
        };
        let opts = sweep::slurm::SlurmOptions {
            binary: std::env::current_exe()?,
            extra_args: vec![],
            results_dir: cfg.results_dir.clone(),
            max_parallel: None,
            cpus_per_task: 1,
        };
        let files = sweep::slurm::emit_jobs(&jobs, "eval-grid", &opts, dir)?;
        for f in &files {
            println!("wrote {}", f.display());
        }
        println!("submit with: bash {}", dir.join("submit.sh").display());
        return Ok(());
    }
    if let Some(index) = a.index {
        let res = sweep::sweep::run_cell(cfg, &runner, index).map_err(super::sweep::usage)?;
        println!(
            "{} score {} ({})",
            res.cell_id,
            res.score,
            cfg.cells_dir().join(format!("{}.json", res.cell_id)).display()
        );
        return Ok(());
    }
    if !a.aggregate {
        let s = sweep::sweep::run_sweep(cfg, &runner, a.jobs, true)?;
        println!(
            "eval-grid: {} cells — {} already finished (skipped), {} ran now, {} failed",
            s.total,
            s.skipped,
            s.ran,
            s.failed.len()
        );
        for (id, e) in &s.failed {
            println!("FAILED {id}: {e}");
        }
        let agg = eval::grid::write_aggregate(&grid)?;
        println!("scores: {} ({} of {} cells)", agg.path.display(), agg.rows, agg.total);
        s.into_result()?;
        return Ok(());
    }
    let agg = eval::grid::write_aggregate(&grid)?;
    println!("scores: {} ({} of {} cells)", agg.path.display(), agg.rows, agg.total);
    super::warn_missing_cells(&agg.missing, agg.failed.len());
    Ok(())
}

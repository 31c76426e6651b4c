//! The evaluation grid: every (checkpoint, V) cell answers one benchmark's question file
//! ([`crate::generation`]), is scored with the reference rules ([`crate::benchmark`]) and becomes one
//! row of the scaling crate's scores CSV (`llm_params` in billions, `visual_tokens`, `text_tokens`,
//! `score`, `task` = the benchmark, `compressor` = the token-reduction method), so that `vlmscale fit
//! --data` and `frontier` read it directly.
//!
//! The cells run through the sweep crate's machinery: the grid is a [`SweepConfig`] (tasks = the
//! benchmark, LLMs = the checkpoints, compressors = the reduction method, each checkpoint restricted to
//! the V it can produce), [`GridRunner`] is its [`CellRunner`], so cells run in parallel, finished
//! cells are skipped on rerun, a failed cell is recorded and the others go on, and a Slurm array runs
//! one cell per task. Inside a cell the answers file itself resumes, so an interrupted cell loses at
//! most the question being answered.
use crate::benchmark::{score_file, Benchmark, GroundTruth};
use crate::formats::AnswerWriter;
use crate::generation::{answer_all, load_items, model_id_from_path, Answerer};
use crate::reduction::TokenReduction;
use candle_core::{DType, Device};
use engine::model::{LoadOptions, Vlm, VlmSpec};
use engine::text::Template;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use sweep::grid::{Cell, GridLlm, ReportNames, SweepConfig, TrainSettings, VisionSettings};
use sweep::runner::{CellResult, CellRunner};

/// What to evaluate (the `vlmscale eval-grid` flags).
#[derive(Clone, Debug)]
pub struct GridSpec {
    /// Checkpoint directories, one LLM size each.
    pub models: Vec<PathBuf>,
    /// V values.
    pub visual_tokens: Vec<u64>,
    /// How each checkpoint is made to read V tokens.
    pub reduction: TokenReduction,
    /// FastV's layer K (`fastv` only).
    pub fastv_layer: usize,
    /// The benchmark (its scorer, and the `task` of the CSV rows).
    pub benchmark: Benchmark,
    /// The question file (JSONL, or ScienceQA's JSON array).
    pub questions: PathBuf,
    /// The image folder.
    pub image_folder: PathBuf,
    /// The scorer's ground truth (see [`GroundTruth::annotations`]).
    pub annotations: PathBuf,
    /// ScienceQA's split.
    pub split: String,
    /// `--conv-mode` (`None`: by LLM family).
    pub conv_mode: Option<Template>,
    /// Maximum new tokens per answer.
    pub max_new_tokens: usize,
    /// ScienceQA's `--single-pred-prompt`.
    pub single_pred: bool,
    /// Results folder (`cells/<id>.json`, `cells/<id>/answers.jsonl`, `aggregate.csv`).
    pub out: PathBuf,
    /// Seed of the keyed answer ids (reproducible answers files).
    pub seed: u64,
}

/// One checkpoint of the grid.
#[derive(Clone, Debug, Serialize)]
pub struct GridModel {
    /// Name in cell ids: the model id (`model_vqa_loader.py`'s), made file-name safe and unique.
    pub name: String,
    /// The checkpoint directory.
    pub dir: PathBuf,
    /// N in billions.
    pub llm_params: f64,
    /// The V this checkpoint produces with the grid's reduction method.
    pub visual_tokens: Vec<u64>,
    /// The grid's V it cannot produce, with the reason.
    pub excluded: Vec<(u64, String)>,
}

/// The grid as planned: the checkpoints and the sweep config whose cells are the (model, V) pairs.
#[derive(Clone, Debug)]
pub struct Grid {
    /// What was asked.
    pub spec: GridSpec,
    /// Per checkpoint, in the order given.
    pub models: Vec<GridModel>,
    /// The cells (one task, one compressor = the reduction method).
    pub config: SweepConfig,
}

fn file_safe(s: &str) -> String {
    let t: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect();
    if t.is_empty() {
        "model".into()
    } else {
        t
    }
}

impl Grid {
    /// Reads every checkpoint's configuration (no weights), works out which V each can produce with
    /// the reduction method and builds the cells.
    ///
    /// Errors: an unreadable checkpoint configuration (engine error), no model or no V, V = 0, two
    /// checkpoints with the same N that both produce one of the V (one checkpoint per (N, V)), or no
    /// cell left.
    pub fn plan(spec: GridSpec) -> std::result::Result<Grid, GridError> {
        if spec.models.is_empty() || spec.visual_tokens.is_empty() {
            return Err(GridError::Usage("eval-grid needs at least one model and one V".into()));
        }
        if let Some(v) = spec.visual_tokens.iter().find(|&&v| v == 0) {
            return Err(GridError::Usage(format!("V = {v}: must be at least 1")));
        }
        let mut models: Vec<GridModel> = Vec::new();
        for dir in &spec.models {
            let s = VlmSpec::resolve(dir, None)?;
            let llm_params = s.llm_config().num_parameters() as f64 / 1e9;
            let mut name = file_safe(&model_id_from_path(dir));
            if models.iter().any(|m| m.name == name) {
                name = format!("{name}-{}", models.len());
            }
            let (grid, layers, trained) = (s.vision_cfg.grid(), s.llm_config().num_hidden_layers, s.visual_tokens());
            let (mut ok, mut excluded) = (Vec::new(), Vec::new());
            for &v in &spec.visual_tokens {
                match spec.reduction.plan(&s.spec, trained, grid, layers, Some(v as usize), spec.fastv_layer) {
                    Ok(_) => ok.push(v),
                    Err(why) => excluded.push((v, why)),
                }
            }
            // Several checkpoints of one N are fine when they cover different V (the paper's grid
            // trains one VLM per (N, V): `--token-reduction trained`); two at the same (N, V) are not.
            if let Some((o, v)) = models
                .iter()
                .filter(|m| m.llm_params == llm_params)
                .find_map(|m| ok.iter().find(|v| m.visual_tokens.contains(v)).map(|v| (m, v)))
            {
                return Err(GridError::Usage(format!(
                    "{} and {} have the same LLM size N = {llm_params} billion and both produce V = {v}: one checkpoint per (N, V)",
                    o.dir.display(),
                    dir.display()
                )));
            }
            models.push(GridModel { name, dir: dir.clone(), llm_params, visual_tokens: ok, excluded });
        }
        let config = SweepConfig {
            path: spec.out.join("eval-grid"),
            name: "eval-grid".into(),
            results_dir: spec.out.clone(),
            seed: spec.seed,
            visual_tokens: spec.visual_tokens.clone(),
            compressors: vec![spec.reduction.name().into()],
            compressor_visual_tokens: BTreeMap::new(),
            llm_visual_tokens: models.iter().map(|m| (m.name.clone(), m.visual_tokens.clone())).collect(),
            tasks: vec![spec.benchmark.name().into()],
            task_groups: BTreeMap::new(),
            llms: models
                .iter()
                .map(|m| GridLlm { name: m.name.clone(), params: m.llm_params, pretrained: None })
                .collect(),
            train: TrainSettings::default(),
            vision: VisionSettings::default(),
            report: ReportNames::default(),
        };
        if config.cells().is_empty() {
            return Err(GridError::Usage(
                "no (model, V) cell can run: every checkpoint was excluded at every V (see `--token-reduction`)".into(),
            ));
        }
        Ok(Grid { spec, models, config })
    }

    /// The runner of this grid's cells.
    pub fn runner(&self) -> GridRunner<'_> {
        GridRunner { grid: self }
    }

    /// The answers file of a cell.
    pub fn answers_path(&self, cell: &Cell) -> PathBuf {
        self.config.cells_dir().join(&cell.id).join("answers.jsonl")
    }
}

/// Errors planning a grid.
#[derive(Debug, thiserror::Error)]
pub enum GridError {
    /// A bad combination of flags.
    #[error("{0}")]
    Usage(String),
    /// A checkpoint's configuration could not be read.
    #[error(transparent)]
    Engine(#[from] engine::Error),
}

impl GridError {
    /// Whether the error is the user's to fix.
    pub fn is_user_error(&self) -> bool {
        match self {
            GridError::Usage(_) => true,
            GridError::Engine(e) => e.is_user_error(),
        }
    }
}

/// Runs one cell of a [`Grid`]: loads the checkpoint, answers the question file at the cell's V into
/// `cells/<id>/answers.jsonl` (resuming), scores it and returns the row.
pub struct GridRunner<'a> {
    grid: &'a Grid,
}

/// The settings a finished cell must have been produced with to be reused.
#[derive(Serialize)]
struct CellSettings<'a> {
    model: &'a Path,
    benchmark: &'static str,
    questions: &'a Path,
    image_folder: &'a Path,
    annotations: &'a Path,
    split: &'a str,
    reduction: &'static str,
    conv_mode: Option<&'static str>,
    max_new_tokens: usize,
    single_pred: bool,
}

impl GridRunner<'_> {
    fn model(&self, cell: &Cell) -> Option<&GridModel> {
        self.grid.models.iter().find(|m| m.name == cell.llm)
    }

    fn run_cell(&self, cell: &Cell, out_dir: &Path) -> std::result::Result<CellResult, String> {
        let spec = &self.grid.spec;
        let m = self.model(cell).ok_or_else(|| format!("no checkpoint named `{}` in the grid", cell.llm))?;
        // PruMerge+ scores with the vision block after the select layer.
        let load = LoadOptions { token_reduction: spec.reduction.method().is_some() };
        let mut vlm = Vlm::load_with(&m.dir, None, DType::F32, &Device::Cpu, &load).map_err(|e| e.to_string())?;
        let reducer = spec.reduction.plan_for(&vlm, Some(cell.visual_tokens as usize), spec.fastv_layer)?;
        let (format, items) = load_items(&spec.questions, spec.single_pred).map_err(|e| e.to_string())?;
        let answers = out_dir.join("answers.jsonl");
        let (writer, resume) = AnswerWriter::open(&answers).map_err(|e| e.to_string())?;
        let mut writer = writer.with_keyed_ids(spec.seed);
        let mut answerer =
            Answerer::new(&mut vlm, spec.conv_mode, reducer, spec.max_new_tokens).map_err(|e| e.to_string())?;
        let text_tokens = answerer.mean_text_tokens(&items.items).map_err(|e| e.to_string())?;
        let model_id = model_id_from_path(&m.dir);
        let summary = answer_all(
            &mut answerer,
            &items,
            format,
            &spec.questions,
            &spec.image_folder,
            &mut writer,
            &model_id,
            resume,
            &mut |_| {},
        )
        .map_err(|e| e.to_string())?;
        let truth =
            GroundTruth { annotations: &spec.annotations, questions: Some(&spec.questions), split: &spec.split };
        let scores = score_file(spec.benchmark, &answers, &truth).map_err(|e| e.to_string())?;
        let score = scores.headline().ok_or_else(|| {
            format!(
                "{} has no headline score for these answers (e.g. a POPE category without any yes)",
                spec.benchmark.name()
            )
        })?;
        let details = serde_json::json!({ "answers": answers, "generation": summary, "scores": scores });
        Ok(CellResult {
            cell_id: cell.id.clone(),
            index: cell.index,
            llm_params: cell.llm_params,
            visual_tokens: cell.visual_tokens,
            text_tokens,
            score,
            task: cell.task.clone(),
            compressor: cell.compressor.clone(),
            family_accuracy: BTreeMap::new(),
            wall_seconds: 0.0,
            runner: self.name().into(),
            settings: None,
            details: Some(details),
        })
    }
}

impl CellRunner for GridRunner<'_> {
    fn name(&self) -> &str {
        "eval-grid"
    }

    fn run(&self, cell: &Cell, out_dir: &Path) -> sweep::Result<CellResult> {
        self.run_cell(cell, out_dir).map_err(|msg| sweep::Error::Runner { cell: cell.id.clone(), msg })
    }

    fn settings(&self, cell: &Cell) -> Option<serde_json::Value> {
        let spec = &self.grid.spec;
        let m = self.model(cell)?;
        let s = CellSettings {
            model: &m.dir,
            benchmark: spec.benchmark.name(),
            questions: &spec.questions,
            image_folder: &spec.image_folder,
            annotations: &spec.annotations,
            split: &spec.split,
            reduction: spec.reduction.name(),
            conv_mode: spec.conv_mode.map(|t| t.name()),
            max_new_tokens: spec.max_new_tokens,
            single_pred: spec.single_pred,
        };
        serde_json::to_value(s).ok()
    }
}

/// Reads a finished grid's result files into the aggregate CSV (`<out>/aggregate.csv`) in cell
/// order. Errors: those of `sweep::aggregate::write_aggregate`.
pub fn write_aggregate(grid: &Grid) -> sweep::Result<sweep::aggregate::Aggregate> {
    sweep::aggregate::write_aggregate(&grid.config)
}

//! The sweep config (TOML) and its expansion into an ordered list of cells.
//!
//! Schema (every key documented in `sweeps/default.toml`):
//!
//! ```toml
//! name = "default"            # sweep name (job names, report title)
//! results_dir = "../results/default"   # relative to this file's folder (or absolute)
//! seed = 0                    # training / evaluation seed (optional, default 0)
//! visual_tokens = [1, 4, 16, 64]        # V, ascending order is kept as written
//! compressors = ["quecc", "quecc-noquery"]
//! tasks = ["sort_of_clevr", "fine_detail"]
//! [compressor_visual_tokens]  # optional: run a compressor only at these V (a subset of visual_tokens)
//! quecc-noquery = [1, 4]
//! [task_groups]               # optional: a group's score is the mean of its tasks' (paper §3: Y
//! reasoning = ["sort_of_clevr", "object_facts"]   # averages the error over benchmarks)
//! [[llm]]                     # one table per LLM size, in the order given
//! name = "xs"                 # a train-crate size preset (xs, s, m, l)
//! # params = 0.0000226        # optional N in billions; default: derived from the preset
//! pretrained = "../models/llm/xs"  # optional pretrained LLM (`vlmscale train llm`), relative to this file
//! [train]                     # optional per-cell training settings (missing keys: the train crate's
//! steps = 300                 #   `VlmTrainConfig::new` defaults); see [`TrainSettings`]
//! [train.task.fine_detail]    # optional per-task overrides of [train]
//! images = 4000
//! [vision]                    # optional tower pretraining settings (once per sweep); see [`VisionSettings`]
//! steps = 150
//! [report]                    # optional: which names the report's claims refer to
//! reasoning_task = "sort_of_clevr"
//! fine_detail_task = "fine_detail"
//! quecc = "quecc"
//! query_free = "quecc-noquery"
//! ```
//!
//! Cells are expanded task-major, then LLM (as listed), then V, then compressor (skipping a V a
//! compressor is restricted away from); a cell's index is its position in that order and its id is
//! `<task>.<llm>.v<V>.<compressor>`, so `--index K` denotes the same cell on every machine that reads
//! the same config.
use crate::error::{io, Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One LLM of the grid (`[[llm]]`): a train-crate size preset ([`train::sizes::LlmSize`]) and its N.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GridLlm {
    /// Train-crate size preset name (`xs`, `s`, `m`, `l`; [`train::sizes::SIZES`]).
    pub name: String,
    /// N, parameters in billions: as written in the TOML, else derived from the preset
    /// ([`crate::llm_preset::preset_params_billions`]).
    pub params: f64,
    /// The pretrained LLM directory every cell of this size starts from (`pretrained`, resolved
    /// against the config's folder); `None`: the LLM starts from a seeded initialisation.
    #[serde(default)]
    pub pretrained: Option<PathBuf>,
}

/// `[[llm]]` as written: `params` is optional.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLlm {
    name: String,
    params: Option<f64>,
    pretrained: Option<PathBuf>,
}

/// Per-cell training settings of `[train]` (and of a `[train.task.<task>]` override). Every key is
/// optional; a missing one takes the train crate's default (`train::vlm_train::VlmTrainConfig::new`,
/// and for the evaluation split the defaults of [`crate::train_runner`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainSettings {
    /// Optimiser steps per cell.
    pub steps: Option<usize>,
    /// Questions per step.
    pub batch_size: Option<usize>,
    /// Peak learning rate (cosine schedule).
    pub lr: Option<f64>,
    /// Warm-up fraction of the steps, in [0, 1).
    pub warmup_ratio: Option<f64>,
    /// Standard deviation of the weight matrices' normal initialisation (> 0).
    pub init_std: Option<f64>,
    /// Staged curriculum: steps trained on the short question form before the natural questions
    /// (`train::vlm_train::VlmTrainConfig::short_question_steps`; 0 = off), at most `steps`.
    pub short_question_steps: Option<usize>,
    /// Stage 1 steps (compressor + projector only, LLM frozen) before the `steps` of stage 2
    /// (`train::vlm_train::VlmTrainConfig::stage1_steps`; 0 = none).
    pub stage1_steps: Option<usize>,
    /// Stage 1's peak learning rate (> 0).
    pub stage1_lr: Option<f64>,
    /// Curriculum over the number of objects per image during the first this many steps (stage 1
    /// and 2 together; `train::vlm_train::VlmTrainConfig::object_ramp_steps`; 0 = off).
    pub object_ramp_steps: Option<usize>,
    /// Generated training images.
    pub images: Option<usize>,
    /// Sort-of-CLEVR questions per family per training image (fine-detail and fact images always
    /// have one).
    pub questions_per_family: Option<usize>,
    /// Generated held-out images the score is measured on.
    pub eval_images: Option<usize>,
    /// Sort-of-CLEVR questions per family per held-out image.
    pub eval_questions_per_family: Option<usize>,
    /// `object_facts` cells only: Sort-of-CLEVR images (`questions_per_family` questions per family
    /// each, the cell's seed) placed before the cell's `images` fact images in its training set — the
    /// scenes the pretrained LLMs learnt to read, through which the projector aligns (the object
    /// ramp applies to them); `vlmscale train vlm --fact-images` builds the same mixture. Default 0.
    pub sort_of_clevr_images: Option<usize>,
    /// `object_facts` cells only: which properties the training images ask: `train` (the default,
    /// properties 0–99, so an evaluated fact, 100–199, was only ever taught in the LLM's text) or
    /// `all` (0–199: the VLM's own training asks the evaluated facts too, of other images).
    pub facts: Option<synth::FactSplit>,
    /// `object_facts` cells only: percent (0–100) of the fact images' questions that ask the object's
    /// name instead ("What is the object?" → "red circle", `synth::DatasetConfig::name_questions`),
    /// the signal stage 1 aligns the visual tokens on when the LLM was pretrained with
    /// `vlmscale train llm --name-questions`; `vlmscale train vlm --name-questions` builds the same
    /// images. Default 0. The held-out split still asks facts only.
    pub name_questions: Option<u32>,
    /// `object_facts` cells only: objects drawn per fact image, training and held-out (1–6,
    /// `synth::DatasetConfig::fact_objects`; `vlmscale train vlm --fact-objects`). Default 1.
    pub fact_objects: Option<u32>,
    /// `fine_detail` cells only: fewest and most digits of the number to read, `[min, max]`, in
    /// training and held-out images (`synth::FineDetailConfig::{min_digits, max_digits}`; `vlmscale
    /// data make --digits`). Default: the task's, 2–3. Each digit is one patch of a row, so longer
    /// numbers (up to 8) need more visual tokens to be read.
    pub digits: Option<[usize; 2]>,
    /// Per-task overrides (`[train.task.<task>]`), only allowed at the top level.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub task: std::collections::BTreeMap<String, TrainSettings>,
}

impl TrainSettings {
    /// These settings with every key `over` sets replaced by its value (`task` is not merged).
    pub fn overridden_by(&self, over: &TrainSettings) -> TrainSettings {
        TrainSettings {
            steps: over.steps.or(self.steps),
            batch_size: over.batch_size.or(self.batch_size),
            lr: over.lr.or(self.lr),
            warmup_ratio: over.warmup_ratio.or(self.warmup_ratio),
            init_std: over.init_std.or(self.init_std),
            short_question_steps: over.short_question_steps.or(self.short_question_steps),
            stage1_steps: over.stage1_steps.or(self.stage1_steps),
            object_ramp_steps: over.object_ramp_steps.or(self.object_ramp_steps),
            stage1_lr: over.stage1_lr.or(self.stage1_lr),
            images: over.images.or(self.images),
            questions_per_family: over.questions_per_family.or(self.questions_per_family),
            eval_images: over.eval_images.or(self.eval_images),
            eval_questions_per_family: over.eval_questions_per_family.or(self.eval_questions_per_family),
            sort_of_clevr_images: over.sort_of_clevr_images.or(self.sort_of_clevr_images),
            facts: over.facts.or(self.facts),
            name_questions: over.name_questions.or(self.name_questions),
            fact_objects: over.fact_objects.or(self.fact_objects),
            digits: over.digits.or(self.digits),
            task: Default::default(),
        }
    }

    /// The settings of `task`: `[train]` overridden by `[train.task.<task>]`.
    pub fn for_task(&self, task: &str) -> TrainSettings {
        match self.task.get(task) {
            Some(o) => self.overridden_by(o),
            None => self.overridden_by(&TrainSettings::default()),
        }
    }

    fn check(&self, file: &str, key: &str) -> Result<()> {
        let cfg = |k: &str, msg: String| Err(Error::Config { file: file.into(), key: format!("{key}.{k}"), msg });
        for (k, v) in [
            ("steps", self.steps),
            ("batch_size", self.batch_size),
            ("images", self.images),
            ("questions_per_family", self.questions_per_family),
            ("eval_images", self.eval_images),
            ("eval_questions_per_family", self.eval_questions_per_family),
        ] {
            if v == Some(0) {
                return cfg(k, "must be at least 1".into());
            }
        }
        if let Some(p) = self.name_questions.filter(|&p| p > 100) {
            return cfg("name_questions", format!("{p}: a percent, at most 100"));
        }
        if let Some(k) = self.fact_objects.filter(|k| !(1..=6).contains(k)) {
            return cfg("fact_objects", format!("{k} objects per image: a scene has 1 to 6"));
        }
        if let Some([min, max]) = self.digits {
            if let Err(e) = synth::FineDetailConfig::with_digits(min, max).validate() {
                return cfg("digits", format!("[{min}, {max}]: {e}"));
            }
        }
        if self.facts == Some(synth::FactSplit::Test) {
            return cfg("facts", "`test` is the evaluation's split: train on `train` or `all`".into());
        }
        for (k, v) in [
            ("images", self.images),
            ("eval_images", self.eval_images),
            ("sort_of_clevr_images", self.sort_of_clevr_images),
        ] {
            if v.is_some_and(|n| n > crate::train_runner::MAX_IMAGES) {
                return cfg(
                    k,
                    format!("{} images: at most {} per split", v.unwrap_or(0), crate::train_runner::MAX_IMAGES),
                );
            }
        }
        for (k, v) in [("lr", self.lr), ("stage1_lr", self.stage1_lr)] {
            if let Some(lr) = v {
                if !(lr.is_finite() && lr > 0.0) {
                    return cfg(k, format!("{lr}: must be a positive number"));
                }
            }
        }
        if let Some(sd) = self.init_std {
            if !(sd.is_finite() && sd > 0.0) {
                return cfg("init_std", format!("{sd}: must be a positive number"));
            }
        }
        if let Some(w) = self.warmup_ratio {
            if !(0.0..1.0).contains(&w) {
                return cfg("warmup_ratio", format!("{w}: must be in [0, 1)"));
            }
        }
        if let (Some(k), Some(steps)) = (self.short_question_steps, self.steps) {
            if k > steps {
                return cfg("short_question_steps", format!("{k}: more than the {steps} steps"));
            }
        }
        if let (Some(k), Some(steps)) = (self.object_ramp_steps, self.steps) {
            if k > steps + self.stage1_steps.unwrap_or(0) {
                return cfg("object_ramp_steps", format!("{k}: more than the stage 1 + stage 2 steps"));
            }
        }
        Ok(())
    }
}

/// Vision-tower pretraining settings of `[vision]` (run once per sweep). Every key is optional; a
/// missing one takes `train::vision_pretrain::VisionPretrainConfig::default()`'s value. The seed is
/// the sweep's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisionSettings {
    /// Optimiser steps.
    pub steps: Option<usize>,
    /// Generated Sort-of-CLEVR training images.
    pub images: Option<usize>,
    /// Images per step.
    pub batch_size: Option<usize>,
    /// Peak learning rate.
    pub lr: Option<f64>,
}

impl VisionSettings {
    fn check(&self, file: &str) -> Result<()> {
        let cfg = |k: &str, msg: String| Err(Error::Config { file: file.into(), key: format!("vision.{k}"), msg });
        for (k, v) in [("steps", self.steps), ("images", self.images), ("batch_size", self.batch_size)] {
            if v == Some(0) {
                return cfg(k, "must be at least 1".into());
            }
        }
        if let Some(lr) = self.lr {
            if !(lr.is_finite() && lr > 0.0) {
                return cfg("lr", format!("{lr}: must be a positive number"));
            }
        }
        Ok(())
    }
}

/// Names the report's claims refer to (paper §4: reasoning vs fine-detail tasks, QueCC vs query-free).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportNames {
    /// The visual-reasoning task family (α > β expected): a task or a `[task_groups]` group.
    pub reasoning_task: String,
    /// The fine-detail (OCR-like) task family (relatively larger β expected).
    pub fine_detail_task: String,
    /// The query-conditioned compressor (QueCC).
    pub quecc: String,
    /// The query-free ablation of it.
    pub query_free: String,
    /// The compressor whose cells the law is fitted on. The paper fits its scaling grid on TokenPacker
    /// (query-free; arXiv 2411.03312 §3), so the default is `tokenpacker`; a grid without such cells
    /// is fitted on its `quecc` cells, else on the first compressor's (by name).
    pub law_compressor: String,
}

impl Default for ReportNames {
    fn default() -> Self {
        ReportNames {
            reasoning_task: "sort_of_clevr".into(),
            fine_detail_task: "fine_detail".into(),
            quecc: "quecc".into(),
            query_free: "quecc-noquery".into(),
            law_compressor: "tokenpacker".into(),
        }
    }
}

/// The TOML file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: String,
    results_dir: PathBuf,
    #[serde(default)]
    seed: u64,
    visual_tokens: Vec<u64>,
    compressors: Vec<String>,
    tasks: Vec<String>,
    #[serde(default)]
    compressor_visual_tokens: std::collections::BTreeMap<String, Vec<u64>>,
    #[serde(default)]
    task_groups: std::collections::BTreeMap<String, Vec<String>>,
    llm: Vec<RawLlm>,
    #[serde(default)]
    train: TrainSettings,
    #[serde(default)]
    vision: VisionSettings,
    #[serde(default)]
    report: ReportNames,
}

/// A validated sweep config.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// The file it was read from (absolute when read with [`SweepConfig::from_path`]).
    pub path: PathBuf,
    /// Sweep name.
    pub name: String,
    /// Results folder (resolved against the config's folder).
    pub results_dir: PathBuf,
    /// Seed of every cell (training, evaluation split) and of the vision tower.
    pub seed: u64,
    /// V values.
    pub visual_tokens: Vec<u64>,
    /// Compressor names.
    pub compressors: Vec<String>,
    /// Compressors run only at some of the V values (`[compressor_visual_tokens]`).
    pub compressor_visual_tokens: std::collections::BTreeMap<String, Vec<u64>>,
    /// LLMs run only at some of the V values, by LLM name (not read from the TOML: set by callers
    /// that build a grid of existing checkpoints, such as `vlmscale eval-grid`, where a checkpoint
    /// can only produce some V).
    pub llm_visual_tokens: std::collections::BTreeMap<String, Vec<u64>>,
    /// Task names.
    pub tasks: Vec<String>,
    /// Task groups (`[task_groups]`): a group's score at a (LLM, V, compressor) is the mean of its
    /// member tasks' scores, as the paper's Y averages the error over its benchmarks (§3); the
    /// aggregate CSV gets a row per group wherever every member has finished.
    pub task_groups: std::collections::BTreeMap<String, Vec<String>>,
    /// LLM sizes.
    pub llms: Vec<GridLlm>,
    /// Per-cell training settings (`[train]`).
    pub train: TrainSettings,
    /// Vision-tower pretraining settings (`[vision]`).
    pub vision: VisionSettings,
    /// Names used by the report.
    pub report: ReportNames,
}

/// One cell of the grid: what to train and evaluate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Position in the expansion order (0-based; the Slurm array index).
    pub index: usize,
    /// Stable id `<task>.<llm>.v<V>.<compressor>` (file name of its result).
    pub id: String,
    /// Task name.
    pub task: String,
    /// LLM preset name.
    pub llm: String,
    /// N in billions.
    pub llm_params: f64,
    /// V, visual tokens after compression.
    pub visual_tokens: u64,
    /// Compressor name.
    pub compressor: String,
    /// Seed.
    pub seed: u64,
}

fn check_name(file: &str, key: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::Config {
            file: file.into(),
            key: key.into(),
            msg: format!(
                "`{s}` must be non-empty and use only letters, digits, `-` and `_` (it is part of file names)"
            ),
        })
    }
}

fn check_unique<T: PartialEq + std::fmt::Debug>(file: &str, key: &str, v: &[T]) -> Result<()> {
    let cfg = |msg: String| Error::Config { file: file.into(), key: key.into(), msg };
    if v.is_empty() {
        return Err(cfg("must list at least one value".into()));
    }
    for (i, a) in v.iter().enumerate() {
        if v[..i].contains(a) {
            return Err(cfg(format!("{a:?} is listed twice")));
        }
    }
    Ok(())
}

impl SweepConfig {
    /// Reads and validates a sweep config.
    ///
    /// Errors: [`Error::Io`] if unreadable; [`Error::Config`] naming the file and key for a TOML syntax
    /// error, a missing or unknown key, an empty or duplicated list, a name unusable in file names, a
    /// non-positive N or V, an `[[llm]]` without `params` whose name is not a train-crate preset, a
    /// `[compressor_visual_tokens]` entry for an unlisted compressor or V, a `[train.task.*]` table
    /// for an unlisted task, or a zero/negative training setting.
    pub fn from_path(path: &Path) -> Result<SweepConfig> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let abs = std::path::absolute(path).map_err(io(path))?;
        Self::from_toml_str(&text, &abs)
    }

    /// Parses config text; `path` names it in errors and anchors a relative `results_dir`.
    /// Same errors as [`SweepConfig::from_path`].
    pub fn from_toml_str(text: &str, path: &Path) -> Result<SweepConfig> {
        let file = path.display().to_string();
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            // Line and column (1-based, columns in characters) of the error's start, as editors show.
            let start = e.span().map_or(0, |s| s.start).min(text.len());
            let before = text.get(..start).unwrap_or(text);
            let line = before.matches('\n').count() + 1;
            let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
            Error::Syntax { file: file.clone(), line, column, msg: e.message().trim_end().to_string() }
        })?;
        let cfg = |key: &str, msg: String| Error::Config { file: file.clone(), key: key.into(), msg };
        check_name(&file, "name", &raw.name)?;
        check_unique(&file, "visual_tokens", &raw.visual_tokens)?;
        if let Some(v) = raw.visual_tokens.iter().find(|&&v| v == 0) {
            return Err(cfg("visual_tokens", format!("V = {v}: must be at least 1")));
        }
        check_unique(&file, "compressors", &raw.compressors)?;
        check_unique(&file, "tasks", &raw.tasks)?;
        for (i, c) in raw.compressors.iter().enumerate() {
            check_name(&file, &format!("compressors[{i}]"), c)?;
        }
        for (i, t) in raw.tasks.iter().enumerate() {
            check_name(&file, &format!("tasks[{i}]"), t)?;
        }
        for (c, vs) in &raw.compressor_visual_tokens {
            let key = format!("compressor_visual_tokens.{c}");
            if !raw.compressors.contains(c) {
                return Err(cfg(&key, format!("`{c}` is not in `compressors` ({})", raw.compressors.join(", "))));
            }
            check_unique(&file, &key, vs)?;
            if let Some(v) = vs.iter().find(|v| !raw.visual_tokens.contains(v)) {
                return Err(cfg(&key, format!("V = {v} is not in `visual_tokens`")));
            }
        }
        check_unique(&file, "llm", &raw.llm.iter().map(|l| &l.name).collect::<Vec<_>>())?;
        let mut llms: Vec<GridLlm> = Vec::with_capacity(raw.llm.len());
        for (i, l) in raw.llm.iter().enumerate() {
            check_name(&file, &format!("llm[{i}].name"), &l.name)?;
            let params = match l.params {
                Some(p) => p,
                None => crate::llm_preset::preset_params_billions(&l.name).map_err(|e| {
                    cfg(&format!("llm[{i}].params"), format!("not given, and cannot be derived from the name: {e}"))
                })?,
            };
            if !(params.is_finite() && params > 0.0) {
                return Err(cfg(
                    &format!("llm[{i}].params"),
                    format!("N = {params} billion: must be a positive number"),
                ));
            }
            if let Some(j) = llms.iter().position(|o| o.params == params) {
                return Err(cfg(
                    &format!("llm[{i}].params"),
                    format!("N = {params} billion is also llm[{j}]'s: the law needs distinct N per size"),
                ));
            }
            let pretrained = l.pretrained.as_ref().map(|p| path.parent().unwrap_or(Path::new(".")).join(p));
            llms.push(GridLlm { name: l.name.clone(), params, pretrained });
        }
        raw.train.check(&file, "train")?;
        for t in &raw.tasks {
            let s = raw.train.for_task(t);
            if t != "fine_detail" && s.digits.is_some() {
                let key = match raw.train.task.get(t).is_some_and(|o| o.digits.is_some()) {
                    true => format!("train.task.{t}.digits"),
                    false => "train.digits".to_string(),
                };
                return Err(cfg(&key, format!("applies to `fine_detail` cells only, and task `{t}` would get it: set it in [train.task.fine_detail]")));
            }
            if t != "object_facts" {
                let key = |k: &str| match raw.train.task.get(t).is_some_and(|o| {
                    o.facts.is_some()
                        || o.sort_of_clevr_images.is_some()
                        || o.name_questions.is_some()
                        || o.fact_objects.is_some()
                }) {
                    true => format!("train.task.{t}.{k}"),
                    false => format!("train.{k}"),
                };
                if s.sort_of_clevr_images.is_some_and(|n| n > 0) {
                    return Err(cfg(&key("sort_of_clevr_images"), format!("applies to `object_facts` cells only, and task `{t}` would get it: set it in [train.task.object_facts]")));
                }
                if s.fact_objects.is_some_and(|k| k != 1) {
                    return Err(cfg(&key("fact_objects"), format!("applies to `object_facts` cells only, and task `{t}` would get it: set it in [train.task.object_facts]")));
                }
                if s.name_questions.is_some_and(|p| p > 0) {
                    return Err(cfg(&key("name_questions"), format!("applies to `object_facts` cells only, and task `{t}` would get it: set it in [train.task.object_facts]")));
                }
                if s.facts.is_some() {
                    return Err(cfg(&key("facts"), format!("applies to `object_facts` cells only, and task `{t}` would get it: set it in [train.task.object_facts]")));
                }
            }
        }
        for (t, o) in &raw.train.task {
            let key = format!("train.task.{t}");
            if !raw.tasks.contains(t) {
                return Err(cfg(&key, format!("`{t}` is not in `tasks` ({})", raw.tasks.join(", "))));
            }
            if !o.task.is_empty() {
                return Err(cfg(&format!("{key}.task"), "per-task overrides cannot nest".into()));
            }
            o.check(&file, &key)?;
        }
        for (g, members) in &raw.task_groups {
            let key = format!("task_groups.{g}");
            check_name(&file, &key, g)?;
            if raw.tasks.contains(g) {
                return Err(cfg(&key, format!("`{g}` is also a task: a group needs a name of its own")));
            }
            check_unique(&file, &key, members)?;
            if let Some(t) = members.iter().find(|t| !raw.tasks.contains(t)) {
                return Err(cfg(&key, format!("`{t}` is not in `tasks` ({})", raw.tasks.join(", "))));
            }
        }
        raw.vision.check(&file)?;
        let base = path.parent().unwrap_or(Path::new("."));
        Ok(SweepConfig {
            path: path.to_path_buf(),
            name: raw.name,
            results_dir: base.join(&raw.results_dir),
            seed: raw.seed,
            visual_tokens: raw.visual_tokens,
            compressors: raw.compressors,
            compressor_visual_tokens: raw.compressor_visual_tokens,
            llm_visual_tokens: Default::default(),
            tasks: raw.tasks,
            task_groups: raw.task_groups,
            llms,
            train: raw.train,
            vision: raw.vision,
            report: raw.report,
        })
    }

    /// Whether `compressor` runs at V = `v` (`[compressor_visual_tokens]`).
    pub fn runs_at(&self, compressor: &str, v: u64) -> bool {
        self.compressor_visual_tokens.get(compressor).is_none_or(|vs| vs.contains(&v))
    }

    /// The grid's cells in index order (task, then LLM, then V, then compressor), without the V an
    /// LLM or a compressor is restricted away from.
    pub fn cells(&self) -> Vec<Cell> {
        let mut out = Vec::new();
        for task in &self.tasks {
            for llm in &self.llms {
                let llm_runs = |v: &u64| self.llm_visual_tokens.get(&llm.name).is_none_or(|vs| vs.contains(v));
                for &v in self.visual_tokens.iter().filter(|v| llm_runs(v)) {
                    for comp in self.compressors.iter().filter(|c| self.runs_at(c, v)) {
                        out.push(Cell {
                            index: out.len(),
                            id: format!("{task}.{}.v{v}.{comp}", llm.name),
                            task: task.clone(),
                            llm: llm.name.clone(),
                            llm_params: llm.params,
                            visual_tokens: v,
                            compressor: comp.clone(),
                            seed: self.seed,
                        });
                    }
                }
            }
        }
        out
    }

    /// The cell at `index`. Errors: [`Error::Index`] when out of range.
    pub fn cell(&self, index: usize) -> Result<Cell> {
        let cells = self.cells();
        let n = cells.len();
        cells.into_iter().nth(index).ok_or(Error::Index { file: self.path.display().to_string(), index, cells: n })
    }

    /// `<results_dir>/cells`, where each cell's JSON goes.
    pub fn cells_dir(&self) -> PathBuf {
        self.results_dir.join("cells")
    }

    /// `<results_dir>/aggregate.csv`.
    pub fn aggregate_path(&self) -> PathBuf {
        self.results_dir.join("aggregate.csv")
    }
}

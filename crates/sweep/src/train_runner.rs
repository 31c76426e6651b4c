//! The real cell runner: every cell trains a VLM (compressor + projector + Qwen2 LLM of the cell's size
//! preset, `train::vlm_train::train_vlm`) on generated data of the cell's task and scores it by exact
//! match on a held-out generated split (`train::eval::evaluate`, greedy decoding through the engine),
//! as the paper trains one VLM per (N, V) cell (arXiv 2411.03312 §3).
//!
//! * **Vision tower**: pretrained once per sweep (`train::vision_pretrain::pretrain_vision`, the
//!   sweep's seed and `[vision]` settings) into `<results_dir>/tower`, then frozen and shared by every
//!   cell. Safe when several processes (cells in parallel, Slurm array tasks on a shared folder) need
//!   it at once: one holds an exclusive lock on `<results_dir>/tower.lock` (an OS file lock, released
//!   by the OS when its holder exits, even by a crash) and trains into `tower.partial`, which is
//!   renamed into place when complete; the others wait for it.
//! * **Training data**: images `0..images` of the task's generator with the sweep's seed
//!   (`synth::Generator`, `questions_per_family` Sort-of-CLEVR questions per family; fine-detail
//!   images have one question each).
//! * **Held-out split**: images `0..eval_images` of the generator with seed `seed + 1`
//!   ([`EVAL_SEED_OFFSET`]), never seen in training (neither by the VLM nor by the tower).
//! * **Score**: overall exact-match accuracy in [0, 1] (the scaling crate fits error = 1 − score).
//!   **Q**: mean question length of the held-out split in tokens (the question alone, as QueCC's
//!   query pass tokenises it: `engine::text::TextTokenizer::tokenize_query`), rounded to an integer as the
//!   scores CSV requires. **N**: the trained LLM's parameter count (`TrainReport::llm_parameters`) in
//!   billions; a cell fails if the config's N disagrees.
//! * **Blind-prior baseline** (cell details): the accuracy of always answering the most frequent
//!   training answer of each question family — what a model that ignores the image can reach.
//!
//! Checkpoints go to `cells/<id>/model/` (LLaVA layout, resumable: a killed cell resumes from its last
//! checkpoint), with `train_report.json` and `eval.json` next to it. A cell with a stage 1 (a pretrained
//! LLM and `stage1_steps`) is also scored at the end of stage 1, before its LLM is trained:
//! `eval_stage1.json` ([`STAGE1_EVAL_FILE`]), `stage1_score` and `stage1_family_accuracy` in the cell's
//! details (null when a killed run resumed past the end of stage 1 before it was scored).
use crate::error::{io, Error, Result};
use crate::grid::{Cell, SweepConfig, TrainSettings};
use crate::runner::{CellResult, CellRunner};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use synth::{DatasetConfig, FactSplit, Generator, ImageSample, Task};
use train::vision_pretrain::{pretrain_vision, VisionPretrainConfig};
use train::vlm_train::{train_vlm, TrainData, VlmTrainConfig};

/// Most images per generated split (`[train]` `images`, `eval_images`).
pub const MAX_IMAGES: usize = 1_000_000;
/// Held-out images when `[train]` does not set `eval_images` (as the train crate's README evaluates).
pub const DEFAULT_EVAL_IMAGES: usize = 200;
/// Sort-of-CLEVR questions per family per held-out image when `[train]` does not say.
pub const DEFAULT_EVAL_QUESTIONS_PER_FAMILY: usize = 1;
/// The held-out split's generator seed is the sweep's seed plus this.
pub const EVAL_SEED_OFFSET: u64 = 1;
/// The folder inside `cells/<id>/` that holds the cell's checkpoint (LLaVA layout, with the trainer
/// state while it trains).
pub const CELL_MODEL_DIR: &str = "model";
/// A cell's held-out evaluation at the end of stage 1 (`train::eval::EvalReport` JSON), next to `eval.json`.
pub const STAGE1_EVAL_FILE: &str = "eval_stage1.json";
/// File inside the tower folder recording the settings it was pretrained with.
pub const TOWER_SETTINGS_FILE: &str = "sweep_tower.json";

/// Everything that determines a cell's training and evaluation (its [`CellResult::settings`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CellSettings {
    /// LLM size preset.
    pub llm: String,
    /// Compressor.
    pub compressor: String,
    /// V.
    pub visual_tokens: usize,
    /// Task.
    pub task: String,
    /// Seed of initialisation, batch order and training data.
    pub seed: u64,
    /// Optimiser steps.
    pub steps: usize,
    /// Questions per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Warm-up fraction.
    pub warmup_ratio: f64,
    /// AdamW weight decay (the train crate's default).
    pub weight_decay: f64,
    /// Gradient-norm clip (the train crate's default).
    pub max_grad_norm: f64,
    /// Standard deviation of the weight matrices' normal initialisation.
    pub init_std: f64,
    /// Steps trained on the short question form first (0 = natural questions only).
    pub short_question_steps: usize,
    /// Stage 1 steps (LLM frozen) before the `steps` of stage 2.
    #[serde(default)]
    pub stage1_steps: usize,
    /// Stage 1's peak learning rate.
    #[serde(default)]
    pub stage1_lr: f64,
    /// Steps of the curriculum over the number of objects per image (0 = off).
    #[serde(default)]
    pub object_ramp_steps: usize,
    /// SHA-256 of the pretrained LLM's weights the cell starts from (its manifest's), `None`
    /// without one; a cell trained from other weights is stale.
    #[serde(default)]
    pub llm_init_sha256: Option<String>,
    /// Training images.
    pub images: usize,
    /// Sort-of-CLEVR questions per family per training image.
    pub questions_per_family: usize,
    /// `object_facts` cells: Sort-of-CLEVR images before the fact images (0 = none).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sort_of_clevr_images: usize,
    /// `object_facts` cells: the properties the training images ask; `None` for other tasks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<FactSplit>,
    /// `object_facts` cells: percent of the fact images' questions that ask the object's name.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub name_questions: u32,
    /// `object_facts` cells: objects drawn per fact image, training and held-out (1 = alone).
    #[serde(skip_serializing_if = "is_one")]
    pub fact_objects: u32,
    /// `fine_detail` cells: the number's fewest and most digits, training and held-out (`None`: the
    /// task's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digits: Option<[usize; 2]>,
    /// Held-out images.
    pub eval_images: usize,
    /// Sort-of-CLEVR questions per family per held-out image.
    pub eval_questions_per_family: usize,
    /// Seed of the held-out generator.
    pub eval_seed: u64,
    /// The tower's pretraining settings.
    pub tower: TowerSettings,
}

/// The vision tower's pretraining settings (what `sweep_tower.json` records).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct TowerSettings {
    /// Optimiser steps.
    pub steps: usize,
    /// Training images.
    pub images: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Seed.
    pub seed: u64,
    /// The pretraining objective's version ([`train::vision_pretrain::OBJECTIVE`]); a tower
    /// recorded without one predates the absolute-centre target and is stale.
    #[serde(default)]
    pub objective: String,
}

/// The train-crate runner (see the module docs). Construct with [`TrainRunner::new`].
pub struct TrainRunner {
    cfg: SweepConfig,
    tower: VisionPretrainConfig,
    /// Serialises tower preparation among this process's threads.
    tower_lock: Mutex<()>,
}

fn runner_err(cell: &Cell) -> impl Fn(String) -> Error + '_ {
    move |msg| Error::Runner { cell: cell.id.clone(), msg }
}

impl TrainRunner {
    /// Checks that every task, compressor, LLM preset and (compressor, V) pair of `cfg` can be trained
    /// (so a typo fails before any cell runs) and resolves the tower settings.
    ///
    /// Errors: [`Error::Config`] naming the config file and key: an unknown task (not a `synth` task),
    /// compressor, LLM preset, or a V the compressor cannot produce from the tower's patch grid.
    pub fn new(cfg: &SweepConfig) -> Result<TrainRunner> {
        let file = cfg.path.display().to_string();
        let bad = |key: String, msg: String| Error::Config { file: file.clone(), key, msg };
        for (i, t) in cfg.tasks.iter().enumerate() {
            if Task::from_name(t).is_none() {
                return Err(bad(
                    format!("tasks[{i}]"),
                    format!("`{t}` is not a generated task (sort_of_clevr, fine_detail)"),
                ));
            }
        }
        let mut tower = VisionPretrainConfig { seed: cfg.seed, ..VisionPretrainConfig::default() };
        let v = &cfg.vision;
        tower.steps = v.steps.unwrap_or(tower.steps);
        tower.images = v.images.unwrap_or(tower.images);
        tower.batch_size = v.batch_size.unwrap_or(tower.batch_size);
        tower.lr = v.lr.unwrap_or(tower.lr);
        let grid = tower.clip.grid();
        for (i, l) in cfg.llms.iter().enumerate() {
            let size =
                train::sizes::LlmSize::from_name(&l.name).map_err(|e| bad(format!("llm[{i}].name"), e.to_string()))?;
            for (j, c) in cfg.compressors.iter().enumerate() {
                let kind = train::model::trainable_compressor(c)
                    .map_err(|e| bad(format!("compressors[{j}]"), e.to_string()))?;
                for &vt in cfg.visual_tokens.iter().filter(|&&vt| cfg.runs_at(c, vt)) {
                    train::model::compressor_spec(kind, vt as usize, grid, tower.clip.hidden_size, size.hidden_size)
                        .map_err(|e| bad("visual_tokens".into(), format!("compressor `{c}`, V = {vt}: {e}")))?;
                }
            }
        }
        Ok(TrainRunner { cfg: cfg.clone(), tower, tower_lock: Mutex::new(()) })
    }

    /// `<results_dir>/tower`: the sweep's frozen vision tower (a CLIP directory).
    pub fn tower_dir(&self) -> PathBuf {
        self.cfg.results_dir.join("tower")
    }

    /// The tower's pretraining settings.
    pub fn tower_settings(&self) -> TowerSettings {
        let t = &self.tower;
        TowerSettings {
            steps: t.steps,
            images: t.images,
            batch_size: t.batch_size,
            lr: t.lr,
            seed: t.seed,
            objective: train::vision_pretrain::OBJECTIVE.to_string(),
        }
    }

    /// The resolved settings of `cell`: VlmTrainConfig::new's defaults, overridden by `[train]`, then
    /// by `[train.task.<task>]`.
    pub fn cell_settings(&self, cell: &Cell) -> CellSettings {
        let d =
            VlmTrainConfig::new(&cell.llm, &cell.compressor, cell.visual_tokens as usize, Path::new(""), Path::new(""));
        let (d_qpf, d_images) = match &d.data {
            TrainData::Generated { config, images } => (config.questions_per_family, *images),
            TrainData::Jsonl(_) | TrainData::Mixture(_) => (DatasetConfig::default().questions_per_family, 2000),
        };
        let s: TrainSettings = self.cfg.train.for_task(&cell.task);
        CellSettings {
            llm: cell.llm.clone(),
            compressor: cell.compressor.clone(),
            visual_tokens: cell.visual_tokens as usize,
            task: cell.task.clone(),
            seed: cell.seed,
            steps: s.steps.unwrap_or(d.steps),
            batch_size: s.batch_size.unwrap_or(d.batch_size),
            lr: s.lr.unwrap_or(d.lr),
            warmup_ratio: s.warmup_ratio.unwrap_or(d.warmup_ratio),
            weight_decay: d.weight_decay,
            max_grad_norm: d.max_grad_norm,
            init_std: s.init_std.unwrap_or(d.init_std),
            short_question_steps: s.short_question_steps.unwrap_or(d.short_question_steps),
            stage1_steps: s.stage1_steps.unwrap_or(d.stage1_steps),
            object_ramp_steps: s.object_ramp_steps.unwrap_or(d.object_ramp_steps),
            stage1_lr: s.stage1_lr.unwrap_or(d.stage1_lr),
            llm_init_sha256: self.pretrained_llm(cell).and_then(|dir| pretrained_sha256(&dir)),
            images: s.images.unwrap_or(d_images),
            questions_per_family: s.questions_per_family.unwrap_or(d_qpf),
            sort_of_clevr_images: s.sort_of_clevr_images.unwrap_or(0),
            facts: (cell.task == Task::ObjectFacts.name()).then(|| s.facts.unwrap_or(FactSplit::Train)),
            name_questions: if cell.task == Task::ObjectFacts.name() { s.name_questions.unwrap_or(0) } else { 0 },
            fact_objects: if cell.task == Task::ObjectFacts.name() { s.fact_objects.unwrap_or(1) } else { 1 },
            digits: s.digits.filter(|_| cell.task == Task::FineDetail.name()),
            eval_images: s.eval_images.unwrap_or(DEFAULT_EVAL_IMAGES),
            eval_questions_per_family: s.eval_questions_per_family.unwrap_or(DEFAULT_EVAL_QUESTIONS_PER_FAMILY),
            eval_seed: cell.seed.wrapping_add(EVAL_SEED_OFFSET),
            tower: self.tower_settings(),
        }
    }

    /// The pretrained LLM directory of `cell`'s size (`[[llm]] pretrained`), if any.
    pub fn pretrained_llm(&self, cell: &Cell) -> Option<PathBuf> {
        self.cfg.llms.iter().find(|l| l.name == cell.llm).and_then(|l| l.pretrained.clone())
    }

    /// Pretrains the tower unless a complete one with the same settings is in [`Self::tower_dir`];
    /// waits while another process holds the lock. `progress(step, total, loss)` is called during
    /// pretraining (only in the process that does it). Returns the tower folder.
    ///
    /// Errors: [`Error::Tower`] when the folder holds a tower pretrained with other settings (or not
    /// by a sweep), or when pretraining fails; [`Error::Io`] for the lock file.
    pub fn prepare_tower(&self, progress: &mut dyn FnMut(usize, usize, f64)) -> Result<PathBuf> {
        let _guard = self.tower_lock.lock().unwrap_or_else(|p| p.into_inner());
        let dir = self.tower_dir();
        let want = self.tower_settings();
        let lock = self.cfg.results_dir.join("tower.lock");
        std::fs::create_dir_all(&self.cfg.results_dir).map_err(io(&self.cfg.results_dir))?;
        let lock_file =
            std::fs::OpenOptions::new().create(true).write(true).truncate(false).open(&lock).map_err(io(&lock))?;
        let mut waited = false;
        loop {
            if let Some(have) = read_tower_settings(&dir)? {
                if have != want {
                    return Err(Error::Tower {
                        dir,
                        msg: format!(
                            "was pretrained with {}, the config now gives {}: delete the folder (and every cell trained on it) or use another results folder",
                            serde_json::to_string(&have).unwrap_or_default(),
                            serde_json::to_string(&want).unwrap_or_default()
                        ),
                    });
                }
                return Ok(dir);
            }
            match lock_file.try_lock() {
                Ok(()) => {
                    // Another process may have finished the tower between the check and the lock.
                    let res = match read_tower_settings(&dir) {
                        Ok(None) => self.pretrain(&dir, &want, progress),
                        Ok(Some(_)) => Ok(()),
                        Err(e) => Err(e),
                    };
                    let _ = lock_file.unlock();
                    res?;
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    if !waited {
                        eprintln!("waiting for the vision tower: {} is held by another process", lock.display());
                        waited = true;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(500));
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock)(e)),
            }
        }
    }

    fn pretrain(&self, dir: &Path, want: &TowerSettings, progress: &mut dyn FnMut(usize, usize, f64)) -> Result<()> {
        let tower_err = |msg: String| Error::Tower { dir: dir.to_path_buf(), msg };
        if dir.exists() {
            return Err(tower_err(format!(
                "exists but has no {TOWER_SETTINGS_FILE} (not written by a sweep, or incomplete): delete it"
            )));
        }
        let partial = self.cfg.results_dir.join("tower.partial");
        if partial.exists() {
            std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
        }
        pretrain_vision(&self.tower, &partial, progress).map_err(|e| tower_err(format!("pretraining failed: {e}")))?;
        let json = serde_json::to_string_pretty(want).map_err(|e| tower_err(e.to_string()))?;
        scaling::output::write_atomic(&partial.join(TOWER_SETTINGS_FILE), json.as_bytes())?;
        std::fs::rename(&partial, dir).map_err(io(dir))?;
        Ok(())
    }
}

/// The weights' SHA-256 recorded in a pretrained LLM directory's manifest (`None` if unreadable: the
/// run itself then reports the manifest error).
fn pretrained_sha256(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(train::llm_pretrain::MANIFEST_FILE)).ok()?;
    let m: train::llm_pretrain::LlmManifest = serde_json::from_str(&text).ok()?;
    m.weights_sha256().map(str::to_string)
}

/// The settings a complete tower folder was pretrained with (`None`: no complete tower there).
fn read_tower_settings(dir: &Path) -> Result<Option<TowerSettings>> {
    let path = dir.join(TOWER_SETTINGS_FILE);
    match std::fs::read_to_string(&path) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| Error::Tower { dir: dir.to_path_buf(), msg: format!("{}: {e}", path.display()) }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(&path)(e)),
    }
}

/// CPU time (user + system) of the calling thread so far, seconds (`clock_gettime` with
/// `CLOCK_THREAD_CPUTIME_ID`); `None` where the clock is unavailable. With one compute thread per cell
/// (the sweep's default with `--jobs` equal to the cores) this is the cell's CPU cost, independent of
/// other load.
pub fn thread_cpu_seconds() -> Option<f64> {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the call only writes it.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    (rc == 0).then_some(ts.tv_sec as f64 + ts.tv_nsec as f64 * 1e-9)
}

/// A cell's training images: `settings.images` of `task` (cell seed); for an `object_facts` cell
/// with `sort_of_clevr_images`, those Sort-of-CLEVR scenes first (cell seed) and then the fact images
/// (seed + 1) — the mixture `vlmscale train vlm --fact-images` trains on. Fact images, like
/// fine-detail ones, ask one question each.
pub fn training_data(task: Task, settings: &CellSettings) -> TrainData {
    let s = settings;
    let questions_per_family = if task == Task::ObjectFacts { 1 } else { s.questions_per_family };
    let main = |seed: u64| DatasetConfig {
        task,
        seed,
        questions_per_family,
        facts: s.facts.unwrap_or(FactSplit::Train),
        name_questions: s.name_questions,
        fact_objects: s.fact_objects,
        fine_detail: fine_detail(s.digits),
        ..DatasetConfig::default()
    };
    if task != Task::ObjectFacts || s.sort_of_clevr_images == 0 {
        return TrainData::Generated { config: main(s.seed), images: s.images };
    }
    let scenes =
        DatasetConfig { seed: s.seed, questions_per_family: s.questions_per_family, ..DatasetConfig::default() };
    TrainData::Mixture(vec![(scenes, s.sort_of_clevr_images), (main(s.seed.wrapping_add(1)), s.images)])
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

fn is_one(n: &u32) -> bool {
    *n == 1
}

/// The fine-detail layout with the number's length `digits` (`None`: the task's default).
fn fine_detail(digits: Option<[usize; 2]>) -> synth::FineDetailConfig {
    digits.map(|[min, max]| synth::FineDetailConfig::with_digits(min, max)).unwrap_or_default()
}

/// The generated split of `task` with `seed`: images `0..images`, `object_facts` questions about the
/// properties of `facts` with `fact_objects` objects per image, fine-detail numbers of `digits`.
fn split(
    task: Task,
    seed: u64,
    questions_per_family: usize,
    images: usize,
    (facts, fact_objects, digits): (FactSplit, u32, Option<[usize; 2]>),
) -> std::result::Result<Vec<ImageSample>, String> {
    let fine_detail = fine_detail(digits);
    let config = DatasetConfig {
        task,
        seed,
        questions_per_family,
        facts,
        fact_objects,
        fine_detail,
        ..DatasetConfig::default()
    };
    Generator::new(config).and_then(|g| g.generate(0..images as u64)).map_err(|e| e.to_string())
}

/// The stage-1 evaluation written next to a cell's checkpoint (`None` when the cell has no stage 1, or
/// when a killed run resumed past the end of stage 1 before it was scored).
/// Errors: an unreadable or corrupt file, named.
fn read_stage1_eval(path: &Path) -> Result<Option<train::eval::EvalReport>> {
    match std::fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t)
            .map(Some)
            .map_err(|e| Error::CellFile { path: path.to_path_buf(), msg: e.to_string() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io(path)(e)),
    }
}

/// Accuracy of answering each question with the most frequent training answer of its family.
fn blind_prior_accuracy(train: &[ImageSample], eval: &[ImageSample]) -> f64 {
    let mut counts: HashMap<&str, BTreeMap<&str, usize>> = HashMap::new();
    for qa in train.iter().flat_map(|s| &s.qas) {
        *counts.entry(qa.family.name()).or_default().entry(qa.answer.trim()).or_default() += 1;
    }
    let prior: HashMap<&str, &str> = counts
        .iter()
        .filter_map(|(f, c)| c.iter().max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0))).map(|(a, _)| (*f, *a)))
        .collect();
    let (mut right, mut total) = (0usize, 0usize);
    for qa in eval.iter().flat_map(|s| &s.qas) {
        total += 1;
        right += (prior.get(qa.family.name()) == Some(&qa.answer.trim())) as usize;
    }
    right as f64 / total.max(1) as f64
}

impl CellRunner for TrainRunner {
    fn name(&self) -> &str {
        "train"
    }

    fn settings(&self, cell: &Cell) -> Option<serde_json::Value> {
        serde_json::to_value(self.cell_settings(cell)).ok()
    }

    fn run(&self, cell: &Cell, out_dir: &Path) -> Result<CellResult> {
        let fail = runner_err(cell);
        let tower = self.prepare_tower(&mut |_, _, _| {})?;
        let cpu0 = thread_cpu_seconds();
        let s = self.cell_settings(cell);
        let task = Task::from_name(&cell.task).ok_or_else(|| fail(format!("unknown task `{}`", cell.task)))?;
        let model_dir = out_dir.join(CELL_MODEL_DIR);

        // Train (resumes from model_dir's checkpoint if a previous run of this cell was killed).
        let mut tc = VlmTrainConfig::new(&s.llm, &s.compressor, s.visual_tokens, &tower, &model_dir);
        tc.data = training_data(task, &s);
        tc.seed = s.seed;
        tc.steps = s.steps;
        tc.batch_size = s.batch_size;
        tc.lr = s.lr;
        tc.warmup_ratio = s.warmup_ratio;
        tc.init_std = s.init_std;
        tc.short_question_steps = s.short_question_steps;
        tc.stage1_steps = s.stage1_steps;
        tc.object_ramp_steps = s.object_ramp_steps;
        tc.stage1_lr = s.stage1_lr;
        tc.llm_init = self.pretrained_llm(cell);

        // The held-out split, also scored at the end of stage 1 (compressor and projector trained,
        // the LLM as pretrained) into `eval_stage1.json`.
        let eval = split(
            task,
            s.eval_seed,
            s.eval_questions_per_family,
            s.eval_images,
            (FactSplit::Test, s.fact_objects, s.digits),
        )
        .map_err(|e| fail(format!("held-out split: {e}")))?;
        let stage1_file = out_dir.join(STAGE1_EVAL_FILE);
        let mut stage1_err = None;
        let rep = train_vlm(&tc, &mut |info| {
            if info.stage1_end {
                let scored = train::eval::evaluate(&model_dir, &eval, None, &mut |_, _| {})
                    .and_then(|er| train::eval::write_report(&stage1_file, &er));
                stage1_err = scored.err();
            }
        })
        .map_err(|e| fail(format!("training: {e}")))?;
        if let Some(e) = stage1_err {
            return Err(fail(format!("evaluation at the end of stage 1: {e}")));
        }
        if !rep.finished {
            return Err(fail(format!("training stopped after {} of {} steps", rep.steps, s.stage1_steps + s.steps)));
        }
        let n = rep.llm_parameters as f64 / 1e9;
        if n != cell.llm_params {
            return Err(fail(format!(
                "the config's N = {} billion differs from the trained LLM's {} parameters ({n} billion): drop `params` from [[llm]] `{}` to derive it",
                cell.llm_params, rep.llm_parameters, cell.llm
            )));
        }
        train::checkpoint_io::write_json_atomic(&out_dir.join("train_report.json"), &rep)
            .map_err(|e| fail(e.to_string()))?;

        // Evaluate on the held-out split.
        let er = train::eval::evaluate(&model_dir, &eval, None, &mut |_, _| {})
            .map_err(|e| fail(format!("evaluation: {e}")))?;
        train::eval::write_report(&out_dir.join("eval.json"), &er).map_err(|e| fail(e.to_string()))?;

        // Q: mean question length in tokens.
        let enc = train::batch::ConversationEncoder::new(&model_dir.join("tokenizer.json"))
            .map_err(|e| fail(e.to_string()))?;
        let mut q_sum = 0usize;
        let mut q_n = 0usize;
        for qa in eval.iter().flat_map(|x| &x.qas) {
            let q = qa.question.strip_prefix("<image>\n").unwrap_or(&qa.question);
            q_sum += enc.tokenizer().tokenize_query(q).map_err(|e| fail(e.to_string()))?.len();
            q_n += 1;
        }
        let q_mean = q_sum as f64 / q_n.max(1) as f64;

        let train_split = tc.data.load().map_err(|e| fail(format!("training split: {e}")))?;
        let prior = blind_prior_accuracy(&train_split, &eval);

        let mut family_accuracy: BTreeMap<String, f64> =
            er.families.iter().map(|(k, v)| (k.clone(), v.accuracy)).collect();
        family_accuracy.extend(er.groups.iter().map(|(k, v)| (k.clone(), v.accuracy)));
        let stage1 = read_stage1_eval(&stage1_file).map_err(|e| fail(e.to_string()))?;
        let details = serde_json::json!({
            "stage1_score": stage1.as_ref().map(|r| r.overall.accuracy),
            "stage1_family_accuracy": stage1.as_ref().map(|r| r.families.iter().map(|(k, v)| (k.clone(), v.accuracy)).collect::<BTreeMap<_, _>>()),
            "llm_parameters": rep.llm_parameters,
            "trainable_parameters": rep.trainable_parameters,
            "train_steps": rep.steps,
            "resumed_from": rep.resumed_from,
            "final_loss": rep.final_loss,
            "recent_loss": rep.recent_loss,
            "train_examples": rep.examples,
            "feature_seconds": rep.feature_s,
            "train_seconds": rep.train_s,
            "samples_per_s": rep.samples_per_s,
            "eval_questions": er.overall.total,
            "eval_seconds": er.wall_s,
            "text_tokens_mean": q_mean,
            "blind_prior_accuracy": prior,
            "cpu_seconds": thread_cpu_seconds().zip(cpu0).map(|(b, a)| b - a),
        });
        Ok(CellResult {
            cell_id: cell.id.clone(),
            index: cell.index,
            llm_params: cell.llm_params,
            visual_tokens: cell.visual_tokens,
            text_tokens: q_mean.round(),
            score: er.overall.accuracy,
            task: cell.task.clone(),
            compressor: cell.compressor.clone(),
            family_accuracy,
            wall_seconds: 0.0,
            runner: self.name().into(),
            settings: serde_json::to_value(&s).ok(),
            details: Some(details),
        })
    }
}

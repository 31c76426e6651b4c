//! VLM training, top to bottom: data → frozen-tower features (once) → tokenised conversations →
//! compressor + projector + Qwen2 LLM from scratch (candle autograd, differentiable kernels) → AdamW
//! with warm-up + cosine schedule and gradient clipping → atomic LLaVA-layout checkpoints, resumable.
//!
//! Two stages as LLaVA trains (paper §3): with a pretrained LLM (`llm_init`, made by
//! [`crate::llm_pretrain`]), stage 1 (`stage1_steps` steps at `stage1_lr`) trains only the compressor
//! and projector with the LLM frozen, then stage 2 (`steps` steps at `lr`) trains compressor,
//! projector and LLM; each stage has its own warm-up + cosine schedule and fresh AdamW moments. The
//! vision tower is always frozen and only answer tokens are loss targets. Without `llm_init` the LLM
//! starts from a seeded initialisation (stage 1 then has nothing to align to and is usually 0).
//!
//! Determinism: initialisation ([`crate::init`]) and the batch order (a ChaCha8 permutation per epoch)
//! come from `seed`, so a run interrupted after any saved step and resumed with the same settings
//! replays exactly the same updates.
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use engine::vision::load_clip_tower;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use serde_json::json;
use synth::{DatasetConfig, Generator, ImageSample};

use crate::batch::{collate, ConversationEncoder, Example};
use crate::checkpoint_io::{config_json, load_trainer_state, save_checkpoint, TrainerState};
use crate::features::{feature_layers, FeatureSet};
use crate::model::{TrainableVlm, VlmArch};
use crate::optim::{clip_grad_norm, AdamW, Schedule};
use crate::sizes::LlmSize;
use crate::{Error, Result};

/// Where the training conversations come from.
#[derive(Debug, Clone, PartialEq)]
pub enum TrainData {
    /// Generated in memory: images `0..images` of `config`.
    Generated {
        /// The dataset config (task, seed, questions per family, layout).
        config: DatasetConfig,
        /// Number of images.
        images: usize,
    },
    /// A LLaVA JSONL file written by `vlmscale data make` (images relative to it).
    Jsonl(PathBuf),
    /// Several generated sets concatenated in this order (images `0..images` of each config), for
    /// example Sort-of-CLEVR scenes plus `object_facts` images; every sample keeps its scene, so
    /// `object_ramp_steps` applies to the Sort-of-CLEVR part.
    Mixture(Vec<(DatasetConfig, usize)>),
}

impl TrainData {
    /// Loads the samples. Errors: bad config, malformed JSONL, missing/unreadable images.
    pub fn load(&self) -> Result<Vec<ImageSample>> {
        match self {
            TrainData::Generated { config, images } => Ok(Generator::new(*config)?.generate(0..*images as u64)?),
            TrainData::Jsonl(path) => Ok(synth::read_dataset(path)?),
            TrainData::Mixture(parts) => {
                let mut all = Vec::new();
                for (config, images) in parts {
                    all.extend(Generator::new(*config)?.generate(0..*images as u64)?);
                }
                Ok(all)
            }
        }
    }
}

/// Settings of one VLM training run (the CLI's `vlmscale train vlm` flags).
#[derive(Debug, Clone, PartialEq)]
pub struct VlmTrainConfig {
    /// LLM size preset ([`crate::sizes::SIZES`]).
    pub llm: String,
    /// `quecc`, `quecc-noquery`, `tokenpacker` or `avgpool`.
    pub compressor: String,
    /// V.
    pub visual_tokens: usize,
    /// Pretrained tower directory ([`crate::vision_pretrain::pretrain_vision`]).
    pub tower_dir: PathBuf,
    /// `tokenizer.json`; `None` builds the generated-text tokenizer (`synth::build_tokenizer`).
    pub tokenizer: Option<PathBuf>,
    /// Training data.
    pub data: TrainData,
    /// Seed of initialisation and batch order.
    pub seed: u64,
    /// Questions per step.
    pub batch_size: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Warm-up fraction of `steps` (LLaVA: 0.03).
    pub warmup_ratio: f64,
    /// AdamW weight decay (LLaVA: 0).
    pub weight_decay: f64,
    /// Global gradient-norm clip (LLaVA/HF Trainer: 1.0).
    pub max_grad_norm: f64,
    /// Standard deviation of the normal initialisation of every weight matrix (HF
    /// `initializer_range`; [`crate::init::reinit_with_std`]).
    pub init_std: f64,
    /// Save a checkpoint every this many steps (and at the end).
    pub save_every: usize,
    /// Checkpoint directory.
    pub out_dir: PathBuf,
    /// Resume from `out_dir` if it holds a trainer state.
    pub resume: bool,
    /// Stop (after saving) once this many steps ran in this invocation — simulates an interrupt.
    pub stop_after: Option<usize>,
    /// Staged curriculum: the first this many steps train on the short question form
    /// ([`ConversationEncoder::short_example`]: the visual tokens, then "⟨keyword⟩ ⟨colour⟩", the
    /// answer next), the remaining steps on the natural ChatML questions (which evaluation asks).
    /// 0 (default) = natural questions only. The short form makes the answer a one-hop lookup from
    /// the colour word; learnt there, it transfers to the natural question, which from scratch stays
    /// at the answer prior (docs/training-notes.md). Same batch order in both stages.
    pub short_question_steps: usize,
    /// A pretrained LLM directory ([`crate::llm_pretrain`]; its manifest is checked) whose weights
    /// replace the LLM's initialisation; its `tokenizer.json` is used unless `tokenizer` is given.
    /// `None`: the LLM starts from the seeded initialisation.
    pub llm_init: Option<PathBuf>,
    /// Stage 1: steps that train only the compressor and projector (LLM frozen), before the `steps`
    /// of stage 2. 0 = no stage 1.
    pub stage1_steps: usize,
    /// Stage 1's peak learning rate (LLaVA: 1e-3).
    pub stage1_lr: f64,
    /// Curriculum over the number of objects (generated Sort-of-CLEVR data): during the first this
    /// many steps (stage 1 and 2 counted together) each image shows only k of its scene's six
    /// objects — a seeded subset per image, rendered without the others, its questions asked and
    /// answered among them (`synth::questions::ask_among`) — k = 1 + ⌊5 · step / this⌋; then the
    /// full images. As in text pretraining (`llm_pretrain`), the colour → object lookup is found with
    /// one object and sharpened as distractors are added. 0 = six objects throughout.
    pub object_ramp_steps: usize,
    /// Data-parallel worker threads per step ([`TrainableVlm::loss_and_grads`]; 1 = one pass over
    /// the batch). Not part of the resume check: it changes only the gradients' summation order.
    pub threads: usize,
}

impl VlmTrainConfig {
    /// Defaults for `llm`, `compressor`, V, tower and output directory: generated Sort-of-CLEVR
    /// (seed 0, 2000 images × 6 families × 2 questions), batch 32, 1500 steps, lr 2e-3, warm-up 3 %,
    /// one thread.
    pub fn new(llm: &str, compressor: &str, visual_tokens: usize, tower_dir: &Path, out_dir: &Path) -> Self {
        Self {
            llm: llm.into(),
            compressor: compressor.into(),
            visual_tokens,
            tower_dir: tower_dir.into(),
            tokenizer: None,
            data: TrainData::Generated {
                config: DatasetConfig { questions_per_family: 2, ..DatasetConfig::default() },
                images: 2000,
            },
            seed: 0,
            batch_size: 32,
            steps: 1500,
            lr: 2e-3,
            warmup_ratio: 0.03,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            init_std: crate::init::INITIALIZER_RANGE,
            save_every: 250,
            out_dir: out_dir.into(),
            resume: true,
            stop_after: None,
            short_question_steps: 0,
            llm_init: None,
            stage1_steps: 0,
            stage1_lr: 1e-3,
            object_ramp_steps: 0,
            threads: 1,
        }
    }

    /// The settings that must match for a resume (everything that changes the updates); the
    /// pretrained LLM enters by its weights' SHA-256 (`llm_init_sha256`), not its path.
    fn fingerprint(&self, llm_init_sha256: Option<&str>) -> serde_json::Value {
        json!({
            "llm_init": llm_init_sha256, "stage1_steps": self.stage1_steps, "stage1_lr": self.stage1_lr,
            "llm": self.llm, "compressor": self.compressor, "visual_tokens": self.visual_tokens,
            "seed": self.seed, "batch_size": self.batch_size, "steps": self.steps, "lr": self.lr,
            "warmup_ratio": self.warmup_ratio, "weight_decay": self.weight_decay,
            "max_grad_norm": self.max_grad_norm, "data": format!("{:?}", self.data),
            "init_std": self.init_std, "short_question_steps": self.short_question_steps,
            "object_ramp_steps": self.object_ramp_steps,
        })
    }
}

/// The training set of one curriculum stage.
struct Stage {
    examples: Vec<Example>,
    short_examples: Vec<Example>,
    features: Option<FeatureSet>,
}

/// The samples with each Sort-of-CLEVR image reduced to `objects` of its objects (a subset drawn per
/// image from `seed`, the image re-rendered without the others, questions asked among them); other
/// samples unchanged. Errors: a sample without its scene.
fn reduce_samples(samples: &[synth::ImageSample], objects: usize, seed: u64) -> Result<Vec<synth::ImageSample>> {
    use rand::seq::IndexedRandom;
    samples
        .iter()
        .enumerate()
        .map(|(i, s)| match &s.content {
            Some(synth::Content::SortOfClevr(scene)) => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0b1e_c7a5_1a6e);
                rng.set_stream(((objects as u64) << 40) | i as u64);
                let mut present: Vec<synth::Colour> =
                    synth::Colour::ALL.choose_multiple(&mut rng, objects.max(1)).copied().collect();
                present.sort_by_key(|&c| c as usize);
                let per_family = s.qas.len().div_ceil(6).max(1);
                Ok(synth::ImageSample {
                    image: synth::render_scene_of(scene, &present),
                    qas: synth::questions::ask_among(scene, per_family, &present, &mut rng),
                    ..s.clone()
                })
            }
            Some(_) => Ok(s.clone()),
            None => Err(Error::config("object_ramp_steps", format!("image {} has no scene", s.id))),
        })
        .collect()
}

/// Name prefix of the compressor and projector weights (LLaVA's `model.mm_projector.*`).
pub const MM_PREFIX: &str = "model.mm_projector.";

/// Copies a pretrained LLM's weights (an HF Qwen2 directory from [`crate::llm_pretrain`]) into the
/// LLM variables of `varmap` (every name outside [`MM_PREFIX`]). Its `config.json` must describe the
/// same LLM as `expected_config` (the preset's config for this tokenizer).
/// Errors ([`Error::Checkpoint`] naming the file): a different architecture, a missing, extra or
/// mis-shaped tensor; I/O.
pub fn load_pretrained_llm(varmap: &VarMap, dir: &Path, expected_config: &serde_json::Value) -> Result<()> {
    let cfg_path = dir.join("config.json");
    let got = models::decoder::DecoderConfig::from_file(&cfg_path)?;
    let want = models::decoder::DecoderConfig::from_json_str(&expected_config.to_string())?;
    if got != want {
        return Err(Error::Checkpoint {
            path: cfg_path,
            msg: format!("describes another LLM than the preset of this run: {got:?} vs {want:?}"),
        });
    }
    let path = dir.join(engine::checkpoint::WEIGHTS_FILE);
    let tensors = candle_core::safetensors::load(&path, &Device::Cpu)
        .map_err(|e| Error::Checkpoint { path: path.clone(), msg: format!("not a valid safetensors file: {e}") })?;
    let data = varmap.data().lock().map_err(|_| Error::config("varmap", "poisoned lock"))?;
    let mut used = 0;
    for (name, var) in data.iter().filter(|(k, _)| !k.starts_with(MM_PREFIX)) {
        let t = tensors
            .get(name)
            .ok_or_else(|| Error::Checkpoint { path: path.clone(), msg: format!("lacks the LLM tensor `{name}`") })?;
        if t.dims() != var.dims() {
            return Err(Error::Checkpoint {
                path: path.clone(),
                msg: format!("`{name}` has shape {:?}, the LLM expects {:?}", t.dims(), var.dims()),
            });
        }
        var.set(&t.to_dtype(var.dtype())?)?;
        used += 1;
    }
    if used != tensors.len() {
        let extra: Vec<&String> = tensors.keys().filter(|k| !data.contains_key(*k)).collect();
        return Err(Error::Checkpoint { path, msg: format!("holds tensors the LLM does not have: {extra:?}") });
    }
    Ok(())
}

/// The variables of `varmap` with their names (the optimiser sorts them). Errors: a poisoned lock.
pub fn named_vars(varmap: &VarMap) -> Result<Vec<(String, candle_core::Var)>> {
    Ok(varmap
        .data()
        .lock()
        .map_err(|_| Error::config("varmap", "poisoned lock"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect())
}

/// Reported after every step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    /// Steps completed.
    pub step: usize,
    /// Total steps.
    pub total: usize,
    /// Loss of this step (nats per answer token).
    pub loss: f64,
    /// Learning rate used.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Training samples (questions) per second in this invocation.
    pub samples_per_s: f64,
    /// This step ended stage 1 (`stage1_steps` > 0 steps done). Its checkpoint is already saved in
    /// `out_dir`, so the callback can evaluate the stage-1 VLM (LLM still as pretrained) from there.
    pub stage1_end: bool,
}

/// Summary of a run.
#[derive(Debug, Clone, Serialize)]
pub struct TrainReport {
    /// Steps completed (over all invocations).
    pub steps: usize,
    /// Whether all `steps` are done (false after `stop_after`).
    pub finished: bool,
    /// The step this invocation resumed from, if any.
    pub resumed_from: Option<usize>,
    /// Loss of the last step.
    pub final_loss: f64,
    /// Mean loss over the last ≤ 50 steps.
    pub recent_loss: f64,
    /// All step losses so far.
    pub losses: Vec<f64>,
    /// N: LLM parameters.
    pub llm_parameters: usize,
    /// All trainable parameters (LLM + compressor + projector).
    pub trainable_parameters: usize,
    /// Training examples (questions) and images.
    pub examples: usize,
    /// Images.
    pub images: usize,
    /// Seconds spent computing frozen-tower features.
    pub feature_s: f64,
    /// Seconds of training steps in this invocation.
    pub train_s: f64,
    /// Questions per second in this invocation.
    pub samples_per_s: f64,
}

/// Trains (or resumes) a VLM as `cfg` says; see the module docs. `progress` is called after every step,
/// once that step's checkpoint (if any: every `save_every` steps, at the end of stage 1, at a stop and
/// at the end) is saved.
///
/// Errors: unknown LLM size or compressor, V not producible from the tower's grid, unreadable tower
/// or tokenizer, bad data (missing images, corrupt JSONL), a resume whose settings differ from the
/// checkpoint's, a non-finite loss, I/O.
pub fn train_vlm(cfg: &VlmTrainConfig, progress: &mut dyn FnMut(&StepInfo)) -> Result<TrainReport> {
    // 1. Settings.
    let dev = Device::Cpu;
    let size = LlmSize::from_name(&cfg.llm)?;
    let kind = crate::model::trainable_compressor(&cfg.compressor)?;
    if cfg.batch_size == 0 || cfg.steps == 0 || cfg.save_every == 0 || cfg.threads == 0 {
        return Err(Error::config("batch_size/steps/save_every/threads", "must be > 0"));
    }
    if cfg.short_question_steps > cfg.steps {
        return Err(Error::config(
            "short_question_steps",
            format!("{} is more than the {} training steps", cfg.short_question_steps, cfg.steps),
        ));
    }
    if cfg.object_ramp_steps > cfg.stage1_steps + cfg.steps {
        return Err(Error::config(
            "object_ramp_steps",
            format!("{} is more than the {} steps", cfg.object_ramp_steps, cfg.stage1_steps + cfg.steps),
        ));
    }
    // Checked here, before data and tower features are built, not only when the weights are drawn.
    if !(cfg.init_std.is_finite() && cfg.init_std > 0.0) {
        return Err(Error::config("init_std", format!("must be finite and > 0, got {}", cfg.init_std)));
    }
    let tower_cfg = models::vision::ClipVisionConfig::from_file(&cfg.tower_dir.join("config.json"))?;
    crate::model::compressor_spec(kind, cfg.visual_tokens, tower_cfg.grid(), tower_cfg.hidden_size, size.hidden_size)?;

    if !(cfg.stage1_lr.is_finite() && cfg.stage1_lr > 0.0) {
        return Err(Error::config("stage1_lr", format!("must be finite and > 0, got {}", cfg.stage1_lr)));
    }
    // The pretrained LLM: manifest checked (every file's SHA-256) before anything is built.
    let llm_init = match &cfg.llm_init {
        Some(dir) => {
            let manifest = crate::llm_pretrain::verify_manifest(dir)?;
            let sha = manifest.weights_sha256().unwrap_or_default().to_string();
            Some((dir.clone(), sha))
        }
        None => None,
    };

    // 2. Tokenizer and conversations.
    let tokenizer_file = cfg.tokenizer.clone().or_else(|| llm_init.as_ref().map(|(d, _)| d.join("tokenizer.json")));
    let tokenizer_json = match &tokenizer_file {
        Some(p) => std::fs::read(p).map_err(|e| Error::io(p, e))?,
        None => synth::build_tokenizer(&[])?
            .to_string(false)
            .map_err(|e| Error::config("tokenizer", e.to_string()))?
            .into_bytes(),
    };
    // Finish an interrupted checkpoint swap first: creating `out_dir` while only `out_dir.old` holds
    // the last checkpoint would make `recover` discard it.
    crate::checkpoint_io::recover(&cfg.out_dir)?;
    std::fs::create_dir_all(&cfg.out_dir).map_err(|e| Error::io(&cfg.out_dir, e))?;
    let tok_path = cfg.out_dir.join("tokenizer.json");
    if tokenizer_file.is_none() {
        std::fs::write(&tok_path, &tokenizer_json).map_err(|e| Error::io(&tok_path, e))?;
    }
    let encoder = ConversationEncoder::new(tokenizer_file.as_deref().unwrap_or(&tok_path))?;
    let full_samples = cfg.data.load()?;
    if cfg.object_ramp_steps > 0 && full_samples.iter().any(|s| s.content.is_none()) {
        return Err(Error::config("object_ramp_steps", "needs generated data (images read from disk have no scene)"));
    }
    let tower = load_clip_tower(&cfg.tower_dir, tower_cfg.num_hidden_layers, models::Mode::Inference, &dev)?;
    // The training set of a curriculum stage (objects per image): examples, short examples, features.
    let make_stage = |objects: usize| -> Result<Stage> {
        let reduced;
        let samples = if objects < 6 {
            reduced = reduce_samples(&full_samples, objects, cfg.seed)?;
            &reduced
        } else {
            &full_samples
        };
        let mut stage = Stage { examples: vec![], short_examples: vec![], features: None };
        for (i, s) in samples.iter().enumerate() {
            for qa in &s.qas {
                stage.examples.push(encoder.example(i, &qa.question, &qa.answer, qa.family)?);
                if cfg.short_question_steps > 0 {
                    stage.short_examples.push(encoder.short_example(i, &qa.question, &qa.answer, qa.family)?);
                }
            }
        }
        if stage.examples.is_empty() {
            return Err(Error::config("data", "no training questions"));
        }
        stage.features = Some(FeatureSet::compute(&tower, &samples.iter().map(|s| &s.image).collect::<Vec<_>>(), 64)?);
        Ok(stage)
    };
    let objects_at = |step: usize| {
        if step < cfg.object_ramp_steps {
            1 + 5 * step / cfg.object_ramp_steps
        } else {
            6
        }
    };
    // 3. Frozen-tower features of the first stage (the full set unless the curriculum starts).
    let t_feat = Instant::now();
    let mut stage_objects = objects_at(0);
    let mut stage = make_stage(stage_objects)?;
    let feature_s = t_feat.elapsed().as_secs_f64();
    let n_examples_full = full_samples.iter().map(|s| s.qas.len()).sum::<usize>();

    // 4. Model, seeded initialisation, optimiser.
    let llm = size.decoder_config(encoder.vocab_size(), encoder.im_end())?;
    let arch = VlmArch {
        llm,
        compressor: kind,
        visual_tokens: cfg.visual_tokens,
        vision_dim: tower_cfg.hidden_size,
        grid: tower_cfg.grid(),
    };
    let varmap = VarMap::new();
    let model = TrainableVlm::new(&arch, true, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
    crate::init::reinit_with_std(&varmap, cfg.seed, cfg.init_std)?;
    if let Some((dir, _)) = &llm_init {
        load_pretrained_llm(&varmap, dir, &size.hf_config(encoder.vocab_size(), encoder.im_end()))?;
    }
    let vars = named_vars(&varmap)?;
    let trainable_parameters = vars.iter().map(|(_, v)| v.elem_count()).sum();
    // Stage 1 updates only the compressor and projector (`model.mm_projector.*`).
    let stage1_vars: Vec<_> = vars.iter().filter(|(k, _)| k.starts_with(MM_PREFIX)).cloned().collect();
    let stage1 = cfg.stage1_steps;
    let total_steps = stage1 + cfg.steps;
    let schedule_of = |peak_lr: f64, steps: usize| Schedule {
        peak_lr,
        min_lr: 0.0,
        warmup_steps: ((steps as f64 * cfg.warmup_ratio).ceil() as usize).max(1),
        total_steps: steps,
    };
    let (schedule1, schedule) = (schedule_of(cfg.stage1_lr, stage1.max(1)), schedule_of(cfg.lr, cfg.steps));
    let mut in_stage1 = stage1 > 0;
    let mut opt = AdamW::new(if in_stage1 { stage1_vars.clone() } else { vars.clone() }, cfg.weight_decay)?;
    let multi = feature_layers(tower_cfg.num_hidden_layers)?.multi;
    let config = config_json(&arch, &size.hf_config(encoder.vocab_size(), encoder.im_end()), &cfg.tower_dir, &multi)?;

    // 5. Resume.
    let mut state = TrainerState {
        step: 0,
        settings: cfg.fingerprint(llm_init.as_ref().map(|(_, s)| s.as_str())),
        losses: vec![],
        wall_s: 0.0,
    };
    let mut resumed_from = None;
    if cfg.resume {
        if let Some((saved, moments)) = load_trainer_state(&cfg.out_dir)? {
            if saved.settings != state.settings {
                return Err(Error::Checkpoint {
                    path: cfg.out_dir.clone(),
                    msg: format!("cannot resume: saved settings {} differ from {}", saved.settings, state.settings),
                });
            }
            let mut vm = varmap.clone();
            vm.load(cfg.out_dir.join(engine::checkpoint::WEIGHTS_FILE))?;
            // The moments belong to the stage of the last completed step.
            if saved.step <= stage1 && stage1 > 0 {
                opt.load_state(&moments, saved.step)?;
            } else {
                in_stage1 = false;
                opt = AdamW::new(vars.clone(), cfg.weight_decay)?;
                opt.load_state(&moments, saved.step - stage1)?;
            }
            resumed_from = Some(saved.step);
            state = saved;
        }
    }

    // 6. The loop. Each curriculum stage is read in epochs of its own seeded permutation.
    let mut perm_epoch = (usize::MAX, 0);
    let mut perm: Vec<usize> = vec![];
    let t0 = Instant::now();
    let start = state.step;
    let wall_before = state.wall_s;
    let mut ran = 0;
    while state.step < total_steps {
        let step = state.step;
        if in_stage1 && step >= stage1 {
            // Stage 2: everything trains, with fresh moments and its own schedule.
            in_stage1 = false;
            opt = AdamW::new(vars.clone(), cfg.weight_decay)?;
        }
        if objects_at(step) != stage_objects {
            stage_objects = objects_at(step);
            stage = make_stage(stage_objects)?;
        }
        let pool = if step < cfg.short_question_steps { &stage.short_examples } else { &stage.examples };
        let n = stage.examples.len();
        let mut batch_examples: Vec<&Example> = Vec::with_capacity(cfg.batch_size);
        for j in 0..cfg.batch_size {
            let p = step * cfg.batch_size + j;
            if (p / n, n) != perm_epoch {
                perm_epoch = (p / n, n);
                perm = (0..n).collect();
                perm.shuffle(&mut ChaCha8Rng::seed_from_u64(
                    cfg.seed ^ ((p / n) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                ));
            }
            batch_examples.push(&pool[perm[p % n]]);
        }
        let batch = collate(&batch_examples, cfg.visual_tokens, &dev)?;
        let features = stage.features.as_ref().ok_or_else(|| Error::config("data", "no features"))?;
        let feats = features.gather(&batch.image_index, DType::F32)?;
        let (loss_value, mut grads) = model.loss_and_grads(&batch, &feats, opt.vars(), cfg.threads)?;
        if !loss_value.is_finite() {
            return Err(Error::NonFiniteLoss { step, loss: loss_value });
        }
        let grad_norm = clip_grad_norm(&mut grads, opt.vars(), cfg.max_grad_norm)?;
        let lr = if in_stage1 { schedule1.lr(step) } else { schedule.lr(step - stage1) };
        opt.step(&grads, lr)?;
        state.step += 1;
        state.losses.push(loss_value);
        ran += 1;
        let stop = cfg.stop_after.is_some_and(|k| ran >= k);
        let stage1_end = stage1 > 0 && state.step == stage1;
        if state.step.is_multiple_of(cfg.save_every) || state.step == total_steps || stop || stage1_end {
            state.wall_s = wall_before + t0.elapsed().as_secs_f64();
            save_checkpoint(&cfg.out_dir, &config, &varmap, &tokenizer_json, Some((&state, &opt)))?;
        }
        let elapsed = t0.elapsed().as_secs_f64();
        progress(&StepInfo {
            step: state.step,
            total: total_steps,
            loss: loss_value,
            lr,
            grad_norm,
            samples_per_s: (ran * cfg.batch_size) as f64 / elapsed.max(1e-9),
            stage1_end,
        });
        if stop {
            break;
        }
    }
    let train_s = t0.elapsed().as_secs_f64();
    let recent = &state.losses[state.losses.len().saturating_sub(50)..];
    Ok(TrainReport {
        steps: state.step,
        finished: state.step >= total_steps,
        resumed_from,
        final_loss: state.losses.last().copied().unwrap_or(f64::NAN),
        recent_loss: recent.iter().sum::<f64>() / recent.len().max(1) as f64,
        losses: state.losses.clone(),
        llm_parameters: size.num_parameters(encoder.vocab_size()),
        trainable_parameters,
        examples: n_examples_full,
        images: full_samples.len(),
        feature_s,
        train_s,
        samples_per_s: ((state.step - start) * cfg.batch_size) as f64 / train_s.max(1e-9),
    })
}

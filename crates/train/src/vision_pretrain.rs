//! Pretraining the small CLIP-architecture vision tower on generated images, then freezing it.
//!
//! Objective: supervised per-patch scene description, on Sort-of-CLEVR images and, as many,
//! fine-detail images (written digits among distractor shapes; `synth::fine_detail`, whose default
//! layout puts one digit in each of a few consecutive patches). Each of the G×G patch tokens of the
//! last block predicts, through a linear head, (a) what the patch holds — [`PATCH_CLASSES`] classes:
//! nothing, the centre of one of 6 colours × 2 shapes, or one of the 10 digits — with cross-entropy,
//! and (b) where in the image an object's centre lies (x, y divided by the image size, in [0, 1))
//! with a squared error on patches holding an object's centre. The digit classes play the part of
//! CLIP's ability to read text (which OCR-like benchmarks rely on): without them the tower's patch
//! tokens carried too little of a glyph's shape to tell digits apart. Target (b)
//! makes the object's absolute position linearly readable from its patch token: an earlier version
//! regressed only the offset inside the patch, and then a linear read-out of the patch's row or
//! column from the last layer's tokens was right on only 65 % of the left/right halves (the position
//! embedding is one of 64 directions drowned by the content), so "is the red object on the left?"
//! had no feature to read and stayed at chance in VLM training. Why not CLIP's contrastive
//! objective: with 6 objects per image and a few thousand images, a caption-matching loss can be
//! solved from a few global cues, while the VLM questions need every object's colour, shape and
//! position to be readable from the patch grid; the per-patch targets say exactly that, train in
//! minutes on a CPU, and need no text encoder. Like CLIP in the paper, the tower is frozen afterwards.
//!
//! Tower (see [`tower_config`]): 80×80 images, 10 px patches → 8×8 grid (V ∈ {1, 4, 16, 64}), width 64,
//! 4 blocks, 4 heads, QuickGELU, HF CLIP layout; saved as a CLIP directory (`config.json` with
//! `vision_config`, `model.safetensors` under `vision_model.`) that `engine::vision::load_clip_tower` loads.
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use models::layers::Linear;
use models::vision::clip::drop_cls;
use models::vision::{ClipVisionConfig, ClipVisionTower};
use models::Mode;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use synth::{Content, DatasetConfig, FineDetailScene, Generator, ImageSample, Scene, Shape, Task};

use crate::checkpoint_io::write_dir_atomic;
use crate::features::pixels;
use crate::optim::{clip_grad_norm, AdamW, Schedule};
use crate::{Error, Result};

/// Version of the pretraining objective, recorded with sweep towers so that a tower pretrained with
/// an earlier objective is not reused: v2 regresses the object's absolute centre (v1: the offset
/// inside its patch).
pub const OBJECTIVE: &str = "patch-class+absolute-centre+digits/v3";

/// Patch classes: 0 = nothing; 1 + 2·colour + shape for a patch holding an object's centre;
/// [`DIGIT_CLASS`] + d for a patch holding the glyph of digit d.
pub const PATCH_CLASSES: usize = 23;

/// The class of digit 0 ([`PATCH_CLASSES`]).
pub const DIGIT_CLASS: u32 = 13;

/// The tower: 80 px images, patch 10 (8×8 grid), d = 64, 4 blocks, 4 heads, MLP 256, QuickGELU.
pub fn tower_config() -> ClipVisionConfig {
    ClipVisionConfig {
        hidden_size: 64,
        intermediate_size: 256,
        num_hidden_layers: 4,
        num_attention_heads: 4,
        num_channels: 3,
        image_size: 80,
        patch_size: 10,
        hidden_act: "quick_gelu".into(),
        layer_norm_eps: 1e-5,
    }
}

/// Settings of the pretraining run.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionPretrainConfig {
    /// Tower architecture.
    pub clip: ClipVisionConfig,
    /// Training images (generated from `seed`).
    pub images: usize,
    /// Held-out images (generated from `seed + 1`) for the reported patch accuracy.
    pub eval_images: usize,
    /// Seed of data, initialisation and batch order.
    pub seed: u64,
    /// Optimiser steps.
    pub steps: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate (cosine schedule, 5 % warm-up, clip 1.0).
    pub lr: f64,
}

impl Default for VisionPretrainConfig {
    fn default() -> Self {
        Self { clip: tower_config(), images: 2000, eval_images: 200, seed: 0, steps: 1200, batch_size: 32, lr: 2e-3 }
    }
}

/// Outcome of [`pretrain_vision`].
#[derive(Debug, Clone, Serialize)]
pub struct VisionPretrainReport {
    /// Steps run.
    pub steps: usize,
    /// Loss of the last step.
    pub final_loss: f64,
    /// Held-out accuracy of the 13-way patch classification.
    pub eval_patch_accuracy: f64,
    /// Held-out accuracy on the patches holding an object's centre (which object, of 12).
    pub eval_object_accuracy: f64,
    /// Held-out accuracy on the patches holding a digit (which digit, of 10).
    pub eval_digit_accuracy: f64,
    /// Held-out mean absolute error of the predicted object centre on occupied patches, in pixels
    /// (per coordinate).
    pub eval_centre_error_px: f64,
    /// Wall time, s.
    pub wall_s: f64,
    /// Training images per second.
    pub images_per_s: f64,
}

/// Per-patch targets of a scene on a `grid`×`grid` layout: (classes (G²), centres (G²·2), mask (G²)).
/// A patch holding an object's centre gets class 1 + 2·colour + shape (square 0, circle 1) and the
/// centre (x, y) / image size; other patches class 0, centre (0, 0), mask 0.
pub fn patch_targets(scene: &Scene, grid: usize) -> (Vec<u32>, Vec<f32>, Vec<f32>) {
    object_targets(&scene.objects, scene.config.image_size, grid)
}

/// Per-patch targets of an `object_facts` image: [`patch_targets`] of the objects shown (colours
/// `shown`; the asked object alone with one object per image), the asked object (`asked`) winning a
/// patch it shares, as in the image's grid caption (`synth::Scene::grid_cells_asked`).
pub fn object_facts_targets(
    scene: &Scene,
    shown: &[synth::Colour],
    asked: synth::Colour,
    grid: usize,
) -> (Vec<u32>, Vec<f32>, Vec<f32>) {
    // A later object wins a shared patch: the asked one goes last.
    let others = shown.iter().filter(|&&c| c != asked);
    let objects: Vec<synth::Object> = others.chain([&asked]).map(|&c| *scene.object(c)).collect();
    object_targets(&objects, scene.config.image_size, grid)
}

/// Per-patch targets of a fine-detail scene, as [`patch_targets`] for its distractors, and class
/// [`DIGIT_CLASS`] + d for each patch that holds the centre of digit d's glyph (no centre target).
pub fn fine_detail_targets(scene: &FineDetailScene, grid: usize) -> (Vec<u32>, Vec<f32>, Vec<f32>) {
    let size = scene.config.image_size;
    let (mut classes, centres, mask) = object_targets(&scene.distractors, size, grid);
    for (&d, (cx, cy)) in scene.digits.iter().zip(scene.digit_centres()) {
        let (c, r) =
            ((cx as usize * grid / size as usize).min(grid - 1), (cy as usize * grid / size as usize).min(grid - 1));
        classes[r * grid + c] = DIGIT_CLASS + d as u32;
    }
    (classes, centres, mask)
}

fn object_targets(objects: &[synth::Object], image_size: u32, grid: usize) -> (Vec<u32>, Vec<f32>, Vec<f32>) {
    let size = image_size as f32;
    let cell = size / grid as f32;
    let mut classes = vec![0u32; grid * grid];
    let mut centres = vec![0f32; grid * grid * 2];
    let mut mask = vec![0f32; grid * grid];
    for o in objects {
        let (cx, cy) = (o.x as f32 / cell, o.y as f32 / cell);
        let (c, r) = ((cx as usize).min(grid - 1), (cy as usize).min(grid - 1));
        let colour = synth::Colour::ALL.iter().position(|&k| k == o.colour).unwrap_or(0);
        let shape = if o.shape == Shape::Square { 0 } else { 1 };
        let p = r * grid + c;
        classes[p] = 1 + 2 * colour as u32 + shape;
        centres[2 * p] = o.x as f32 / size;
        centres[2 * p + 1] = o.y as f32 / size;
        mask[p] = 1.0;
    }
    (classes, centres, mask)
}

struct Targets {
    classes: Tensor,
    centres: Tensor,
    mask: Tensor,
}

fn targets(samples: &[&ImageSample], grid: usize, dev: &Device) -> Result<Targets> {
    let (mut cl, mut off, mut mask) = (vec![], vec![], vec![]);
    for s in samples {
        let (c, o, m) = match &s.content {
            Some(Content::SortOfClevr(scene)) => patch_targets(scene, grid),
            Some(Content::FineDetail(scene)) => fine_detail_targets(scene, grid),
            Some(Content::ObjectFacts(scene, asked, shown)) => object_facts_targets(scene, shown, *asked, grid),
            None => return Err(Error::config("images", format!("image {} is not a generated scene", s.id))),
        };
        cl.extend(c);
        off.extend(o);
        mask.extend(m);
    }
    let n = samples.len() * grid * grid;
    Ok(Targets {
        classes: Tensor::from_vec(cl, n, dev)?,
        centres: Tensor::from_vec(off, (n, 2), dev)?,
        mask: Tensor::from_vec(mask, (n, 1), dev)?,
    })
}

struct PretrainModel {
    tower: ClipVisionTower,
    head: Linear,
}

impl PretrainModel {
    /// (B, 3, S, S) → head outputs (B·G², 15).
    fn forward(&self, px: &Tensor) -> Result<Tensor> {
        let n = self.tower.config().num_hidden_layers;
        let hs = self.tower.hidden_states(px, n)?;
        let x = drop_cls(&hs[n])?;
        let (b, t, d) = x.dims3()?;
        Ok(self.head.forward(&x.reshape((b * t, d))?)?)
    }

    fn loss(&self, px: &Tensor, tg: &Targets) -> Result<Tensor> {
        let out = self.forward(px)?;
        let logits = out.narrow(1, 0, PATCH_CLASSES)?;
        let ce = candle_nn::loss::cross_entropy(&logits, &tg.classes)?;
        let centre = candle_nn::ops::sigmoid(&out.narrow(1, PATCH_CLASSES, 2)?)?;
        let se = ((centre - &tg.centres)?.sqr()?.broadcast_mul(&tg.mask)?).sum_all()?;
        let occupied = tg.mask.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64;
        Ok((ce + (se / occupied)? * 10.0)?)
    }
}

/// Saves a tower as an HF CLIP vision directory (`config.json`, `model.safetensors`), atomically.
/// The pretraining head is stored under `pretrain_head.` (ignored by the loader). Errors: I/O.
pub fn save_tower(dir: &Path, cfg: &ClipVisionConfig, varmap: &VarMap) -> Result<()> {
    let config = serde_json::json!({
        "architectures": ["CLIPVisionModel"],
        "model_type": "clip_vision_model",
        "hidden_size": cfg.hidden_size,
        "intermediate_size": cfg.intermediate_size,
        "num_hidden_layers": cfg.num_hidden_layers,
        "num_attention_heads": cfg.num_attention_heads,
        "num_channels": cfg.num_channels,
        "image_size": cfg.image_size,
        "patch_size": cfg.patch_size,
        "hidden_act": cfg.hidden_act,
        "layer_norm_eps": cfg.layer_norm_eps,
    });
    write_dir_atomic(dir, &crate::checkpoint_io::MANAGED_FILES, |tmp| {
        std::fs::write(tmp.join("config.json"), serde_json::to_string_pretty(&config).unwrap_or_default())
            .map_err(|e| Error::io(tmp.join("config.json"), e))?;
        crate::checkpoint_io::save_varmap(varmap, &tmp.join("model.safetensors"))?;
        Ok(())
    })
}

/// Pretrains the tower on generated Sort-of-CLEVR images and saves it to `out_dir` (see the module
/// docs). `progress(step, total, loss)` is called after every step.
/// Errors: invalid settings, data generation, I/O.
pub fn pretrain_vision(
    cfg: &VisionPretrainConfig,
    out_dir: &Path,
    progress: &mut dyn FnMut(usize, usize, f64),
) -> Result<VisionPretrainReport> {
    if cfg.images == 0 || cfg.batch_size == 0 || cfg.steps == 0 {
        return Err(Error::config("images/batch_size/steps", "must all be > 0"));
    }
    cfg.clip.validate().map_err(|m| Error::config("clip", m))?;
    let dev = Device::Cpu;
    let grid = cfg.clip.grid();
    // `n` Sort-of-CLEVR images and `n` fine-detail images.
    let data = |seed: u64, n: usize| -> Result<Vec<ImageSample>> {
        let mut out = vec![];
        for task in [Task::SortOfClevr, Task::FineDetail] {
            let mut dc = DatasetConfig { task, seed, ..DatasetConfig::default() };
            dc.scene.image_size = cfg.clip.image_size as u32;
            dc.fine_detail.image_size = cfg.clip.image_size as u32;
            out.extend(Generator::new(dc)?.generate(0..n as u64)?);
        }
        Ok(out)
    };
    let train = data(cfg.seed, cfg.images)?;
    let held = data(cfg.seed.wrapping_add(1_000_003), cfg.eval_images.max(1))?;

    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let model = PretrainModel {
        tower: ClipVisionTower::new(&cfg.clip, Mode::Differentiable, vb.pp("vision_model"))?,
        head: Linear::new(cfg.clip.hidden_size, PATCH_CLASSES + 2, true, vb.pp("pretrain_head"))?,
    };
    crate::init::reinit(&varmap, cfg.seed)?;
    let vars: Vec<(String, candle_core::Var)> = varmap
        .data()
        .lock()
        .map_err(|_| Error::config("varmap", "poisoned lock"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut opt = AdamW::new(vars, 0.0)?;
    let sched = Schedule {
        peak_lr: cfg.lr,
        min_lr: cfg.lr * 0.05,
        warmup_steps: (cfg.steps / 20).max(1),
        total_steps: cfg.steps,
    };
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..train.len()).collect();
    let mut cursor = order.len();
    let t0 = Instant::now();
    let mut last = f64::NAN;
    for step in 0..cfg.steps {
        let mut idx = vec![];
        while idx.len() < cfg.batch_size.min(train.len()) {
            if cursor == order.len() {
                order.shuffle(&mut rng);
                cursor = 0;
            }
            idx.push(order[cursor]);
            cursor += 1;
        }
        let batch: Vec<&ImageSample> = idx.iter().map(|&i| &train[i]).collect();
        let px = pixels(&batch.iter().map(|s| &s.image).collect::<Vec<_>>(), cfg.clip.image_size as u32, &dev)?;
        let tg = targets(&batch, grid, &dev)?;
        let loss = model.loss(&px, &tg)?;
        last = loss.to_scalar::<f32>()? as f64;
        if !last.is_finite() {
            return Err(Error::NonFiniteLoss { step, loss: last });
        }
        let mut grads = loss.backward()?;
        clip_grad_norm(&mut grads, opt.vars(), 1.0)?;
        opt.step(&grads, sched.lr(step))?;
        progress(step + 1, cfg.steps, last);
    }
    let wall = t0.elapsed().as_secs_f64();
    // Held-out accuracy.
    let (mut right, mut total, mut obj_right, mut obj_total) = (0usize, 0usize, 0usize, 0usize);
    let (mut digit_right, mut digit_total) = (0usize, 0usize);
    let mut centre_err = 0f64;
    for chunk in held.chunks(64) {
        let refs: Vec<&ImageSample> = chunk.iter().collect();
        let px = pixels(&refs.iter().map(|s| &s.image).collect::<Vec<_>>(), cfg.clip.image_size as u32, &dev)?;
        let tg = targets(&refs, grid, &dev)?;
        let out = model.forward(&px)?;
        let pred: Vec<u32> = out.narrow(1, 0, PATCH_CLASSES)?.argmax(D::Minus1)?.to_vec1()?;
        let centre: Vec<Vec<f32>> = candle_nn::ops::sigmoid(&out.narrow(1, PATCH_CLASSES, 2)?)?.to_vec2()?;
        let truth: Vec<u32> = tg.classes.to_vec1()?;
        let true_centre: Vec<Vec<f32>> = tg.centres.to_vec2()?;
        let mask: Vec<f32> = tg.mask.flatten_all()?.to_vec1()?;
        for (i, &m) in mask.iter().enumerate() {
            if m > 0.0 {
                for k in 0..2 {
                    centre_err += ((centre[i][k] - true_centre[i][k]).abs() * cfg.clip.image_size as f32) as f64;
                }
            }
        }
        for (p, t) in pred.iter().zip(&truth) {
            total += 1;
            right += (p == t) as usize;
            if *t >= DIGIT_CLASS {
                digit_total += 1;
                digit_right += (p == t) as usize;
            } else if *t != 0 {
                obj_total += 1;
                obj_right += (p == t) as usize;
            }
        }
    }
    save_tower(out_dir, &cfg.clip, &varmap)?;
    let report = VisionPretrainReport {
        steps: cfg.steps,
        final_loss: last,
        eval_patch_accuracy: right as f64 / total.max(1) as f64,
        eval_object_accuracy: obj_right as f64 / obj_total.max(1) as f64,
        eval_digit_accuracy: digit_right as f64 / digit_total.max(1) as f64,
        eval_centre_error_px: centre_err / (2 * obj_total.max(1)) as f64,
        wall_s: wall,
        images_per_s: (cfg.steps * cfg.batch_size) as f64 / wall.max(1e-9),
    };
    crate::checkpoint_io::write_json_atomic(&out_dir.join("pretrain_report.json"), &report)?;
    Ok(report)
}

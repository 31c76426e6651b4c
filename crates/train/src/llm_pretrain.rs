//! Text pretraining of an LLM size preset: the analogue of the paper's pretrained Qwen-1.5 LLMs
//! (paper §3: every VLM of the grid starts from a pretrained LLM of its size, shared across V).
//!
//! The text is the generated world written out: each document is the ChatML conversation that a VLM
//! is asked, with the scene's caption ([`synth::Content::caption`] on the tower's 8×8 grid, e.g.
//! "red circle at row 0 column 3, green rectangle at row 5 column 6, …") in the place of the image:
//!
//! ```text
//! <|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n{CAPTION}\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n{ANSWER}<|im_end|>
//! ```
//!
//! so the pretrained LLM reads scenes and answers every question family (shape, left, top, closest,
//! furthest, count about Sort-of-CLEVR scenes; the number of a fine-detail scene, 1–4 digits) from
//! text. A VLM built on it (`vlm_train`, stage 1) then only has to make its visual tokens play the
//! caption's part, as LLaVA's projector learns to make CLIP features readable by a pretrained LLM.
//!
//! A Sort-of-CLEVR scene's questions (in a seeded random order) are split into training documents
//! of `questions_per_document` turns, each opening with the caption; later turns follow as further
//! ChatML turns (`\n<|im_start|>user\n{QUESTION}<|im_end|>\n<|im_start|>assistant\n{ANSWER}<|im_end|>`).
//! The default, one question per document, is what breaks the binding plateau together with the
//! curriculum over the number of objects (`object_ramp_steps`); six turns after one caption keep
//! every size on it (docs/training-notes.md). A fine-detail scene has one turn. The caption is a
//! sentence per object by default, or the tower's patch grid in words (`caption`). Loss: every
//! answer's tokens and `<|im_end|>` (nats per answer token), as in VLM training. Documents of both
//! tasks are shuffled together. The held-out accuracy asks single-turn questions, as a VLM is asked.
//!
//! The result is a Hugging Face Qwen2 directory (`config.json`, `model.safetensors` with `model.*`
//! names and tied `lm_head`, `tokenizer.json`) plus [`MANIFEST_FILE`]: the settings, steps, wall time,
//! held-out text accuracy per question family and a SHA-256 per file ([`verify_manifest`] checks
//! them). A run is resumable (same atomic checkpoint/trainer state as `vlm_train`) and deterministic
//! for a given seed and CPU.
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, D};
use candle_nn::{VarBuilder, VarMap};
use models::decoder::Decoder;
use models::Mode;
use rand::seq::{IndexedRandom, SliceRandom};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use synth::{CaptionFormat, DatasetConfig, FineDetailConfig, Generator, Task};

use crate::batch::{ConversationEncoder, Example};
use crate::checkpoint_io::{load_trainer_state, save_checkpoint, write_json_atomic, TrainerState};
use crate::optim::{clip_grad_norm, AdamW, Schedule};
use crate::sizes::LlmSize;
use crate::{Error, Result};

/// The manifest of a pretrained LLM directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// The loss of every step of a finished run (JSON array), beside the manifest (not hashed).
pub const LOSSES_FILE: &str = "losses.json";

/// The caption grid: the vision tower's 8×8 patch grid of the generated 80-px images.
pub const CAPTION_GRID: u32 = 8;

/// The files a pretrained LLM directory ships (each hashed in the manifest).
pub const SHIPPED_FILES: [&str; 3] = ["config.json", engine::checkpoint::WEIGHTS_FILE, "tokenizer.json"];

/// Settings of one pretraining run (`vlmscale train llm` flags).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmPretrainConfig {
    /// LLM size preset ([`crate::sizes::SIZES`]).
    pub llm: String,
    /// Seed of the initialisation and the batch order; the corpus draws its scenes with dataset seed
    /// [`CORPUS_SEED_OFFSET`] + `seed` and the held-out text with one more, so the LLM never reads a
    /// scene of a VLM training or evaluation split made with a small seed.
    pub seed: u64,
    /// Sort-of-CLEVR scenes in the corpus (each with `questions_per_family` questions per family).
    pub scenes: usize,
    /// Questions per family per scene.
    pub questions_per_family: usize,
    /// Fine-detail scenes in the corpus (one question each).
    pub fine_detail_scenes: usize,
    /// Held-out scenes of each task for the text accuracy (one question per family per scene).
    pub eval_scenes: usize,
    /// Documents per step.
    pub batch_size: usize,
    /// Optimiser steps.
    pub steps: usize,
    /// Peak learning rate (warm-up then cosine to 0).
    pub lr: f64,
    /// Warm-up fraction of `steps`.
    pub warmup_ratio: f64,
    /// AdamW weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip.
    pub max_grad_norm: f64,
    /// Standard deviation of the weight matrices' normal initialisation ([`crate::init`]).
    pub init_std: f64,
    /// Save a checkpoint every this many steps (and at the end).
    pub save_every: usize,
    /// Text curriculum: the first this many steps ask every question in its short form
    /// (`synth::short_question`: "shape red", …, the answer right after the colour word), then the
    /// natural questions — the curriculum of VLM training, in text. 0 = natural questions only.
    #[serde(default)]
    pub short_question_steps: usize,
    /// Text curriculum over the number of objects: during the first this many steps a Sort-of-CLEVR
    /// document describes and asks about only k of its scene's six objects (a seeded subset per
    /// scene, answers computed among them: `synth::questions::answer_among`), k = 1 + ⌊5 · step /
    /// this⌋, then all six. Associative recall among few distractors is found quickly and carries
    /// over as they are added. 0 = six objects throughout.
    #[serde(default)]
    pub object_ramp_steps: usize,
    /// After the object ramp, this fraction of the Sort-of-CLEVR scenes (a seeded draw per scene)
    /// stays reduced to k of its objects, k uniform in 1..=5 (a seeded subset, answers among them as
    /// during the ramp), so that the easy form of every lookup keeps giving gradient after the ramp.
    /// 0 = every scene has its six objects after the ramp. In [0, 1).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reduced_scenes: f64,
    /// Questions per training document: a Sort-of-CLEVR scene's shuffled questions are split into
    /// documents of this many turns, each opening with the caption (the last may be shorter).
    /// 1 = every question is a single-turn document, as a VLM is asked; 0 = one document per scene
    /// holding all its questions.
    #[serde(default)]
    pub questions_per_document: usize,
    /// How the caption writes the scene in the place of the image: a sentence per object, one word
    /// per patch of the tower's 8×8 grid, or one summed vector of words per patch
    /// (`synth::grid_caption`; the grid formats' words join the vocabulary).
    #[serde(default)]
    pub caption: CaptionFormat,
    /// `object_facts` scenes in the corpus (one object each, `questions_per_family` fact questions
    /// each, `synth::facts`): the world's knowledge, which only text teaches. 0 = none.
    #[serde(default, skip_serializing_if = "is_zero_usize")]
    pub fact_scenes: usize,
    /// Percent of the fact scenes' questions that ask the object's name instead ("What is the
    /// object?" → "red circle", `synth::DatasetConfig::name_questions`), so that the LLM also
    /// reads the object back out of its caption, the skill a VLM's stage 1 can align visual tokens
    /// on. The held-out questions stay facts. 0 = none.
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub name_questions: u32,
    /// Objects in each fact scene's caption (1–6, `synth::DatasetConfig::fact_objects`): the asked
    /// object and `fact_objects − 1` others, the questions naming the asked object's colour ("What is
    /// number 47 of the red object?"); the held-out split is drawn the same way. 1 = the object alone.
    #[serde(default = "one_u32", skip_serializing_if = "is_one_u32")]
    pub fact_objects: u32,
    /// Start from this pretrained LLM directory (a finished `vlmscale train llm` run of the same
    /// preset, its manifest checked) instead of a seeded initialisation: continued pretraining, with
    /// fresh optimiser moments and this run's schedule. Its weights' SHA-256 is part of the resume
    /// fingerprint. `None` = seeded initialisation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init: Option<String>,
}

impl LlmPretrainConfig {
    /// The defaults for preset `llm` (the best recipe measured, docs/training-notes.md): 40 000
    /// Sort-of-CLEVR scenes × 1 question per family, each question its own single-turn document, and
    /// 20 000 fine-detail scenes; sentence captions; the object curriculum over the first 3000 steps;
    /// 300 held-out scenes per task, batch 16 documents, lr 1e-3 with 3 % warm-up, init std 0.125,
    /// 20 000 steps, seed 0.
    pub fn new(llm: &str) -> Self {
        Self {
            llm: llm.into(),
            seed: 0,
            scenes: 40_000,
            questions_per_family: 1,
            fine_detail_scenes: 20_000,
            eval_scenes: 300,
            batch_size: 16,
            steps: 20_000,
            lr: 1e-3,
            warmup_ratio: 0.03,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
            init_std: 0.125,
            save_every: 500,
            short_question_steps: 0,
            object_ramp_steps: 3000,
            reduced_scenes: 0.0,
            questions_per_document: 1,
            caption: CaptionFormat::Sentence,
            fact_scenes: 0,
            name_questions: 0,
            fact_objects: 1,
            init: None,
        }
    }

    fn fingerprint(&self) -> serde_json::Value {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        if let Some(o) = v.as_object_mut() {
            o.remove("save_every");
            o.insert("corpus".into(), json!(CORPUS_VERSION));
        }
        v
    }

    fn check(&self) -> Result<()> {
        if self.scenes + self.fine_detail_scenes + self.fact_scenes == 0 {
            return Err(Error::config(
                "scenes",
                "the corpus is empty: scenes, fine_detail_scenes and fact_scenes are all 0",
            ));
        }
        let positive = [
            ("questions_per_family", self.questions_per_family),
            ("eval_scenes", self.eval_scenes),
            ("batch_size", self.batch_size),
            ("steps", self.steps),
            ("save_every", self.save_every),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(Error::config(name, "must be > 0"));
            }
        }
        for (name, v) in [("lr", self.lr), ("init_std", self.init_std), ("max_grad_norm", self.max_grad_norm)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(Error::config(name, format!("must be finite and > 0, got {v}")));
            }
        }
        if self.short_question_steps > self.steps {
            return Err(Error::config(
                "short_question_steps",
                format!("{} is more than the {} steps", self.short_question_steps, self.steps),
            ));
        }
        if self.object_ramp_steps > self.steps {
            return Err(Error::config(
                "object_ramp_steps",
                format!("{} is more than the {} steps", self.object_ramp_steps, self.steps),
            ));
        }
        if !(0.0..1.0).contains(&self.reduced_scenes) {
            return Err(Error::config("reduced_scenes", format!("must be in [0, 1), got {}", self.reduced_scenes)));
        }
        if !(0.0..1.0).contains(&self.warmup_ratio) {
            return Err(Error::config("warmup_ratio", format!("must be in [0, 1), got {}", self.warmup_ratio)));
        }
        if !(1..=6).contains(&self.fact_objects) {
            return Err(Error::config("fact_objects", format!("must be in 1..=6, got {}", self.fact_objects)));
        }
        Ok(())
    }
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

fn is_one_u32(v: &u32) -> bool {
    *v == 1
}

fn one_u32() -> u32 {
    1
}

fn is_zero_usize(v: &usize) -> bool {
    *v == 0
}

/// Added to the run's seed for the corpus's dataset seed (see [`LlmPretrainConfig::seed`]).
pub const CORPUS_SEED_OFFSET: u64 = 1_000_000;

/// Version of the corpus format (part of the resume fingerprint and the manifest).
pub const CORPUS_VERSION: &str = "chatml-caption-for-image-multiturn/v1";

/// The fine-detail layout of the corpus, spelt out (not the task's default, which may change without
/// changing the corpus): numbers of 1–4 digits, so the LLM reads any number the fine-detail task can
/// ask, among up to 4 distractors, on the 80-px image.
fn corpus_fine_detail() -> FineDetailConfig {
    FineDetailConfig {
        image_size: 80,
        min_digits: 1,
        max_digits: 4,
        glyph_scale: 1,
        max_distractors: 4,
        distractor_half_size: 5,
        digit_cell: 0,
    }
}

/// The corpus's generators with their scene counts: Sort-of-CLEVR (`per_family` questions per
/// family), fine detail ([`corpus_fine_detail`]) and, when `facts` > 0, `object_facts` (`per_family`
/// questions per scene, `name_questions` percent of them asking the object's name, `fact_objects`
/// objects per scene), all with dataset seed `seed`.
fn corpus_tasks(
    seed: u64,
    scenes: usize,
    per_family: usize,
    fine: usize,
    (facts, name_questions, fact_objects): (usize, u32, u32),
) -> Vec<(DatasetConfig, usize)> {
    let sort_of_clevr =
        DatasetConfig { task: Task::SortOfClevr, seed, questions_per_family: per_family, ..DatasetConfig::default() };
    let fine_detail =
        DatasetConfig { task: Task::FineDetail, seed, fine_detail: corpus_fine_detail(), ..DatasetConfig::default() };
    let object_facts = DatasetConfig {
        task: Task::ObjectFacts,
        seed,
        questions_per_family: per_family,
        name_questions,
        fact_objects,
        ..DatasetConfig::default()
    };
    let mut tasks = vec![(sort_of_clevr, scenes), (fine_detail, fine)];
    if facts > 0 {
        tasks.push((object_facts, facts));
    }
    tasks
}

/// A caption as model input: token ids, and per token up to [`EXTRA_SLOTS`] more token ids whose
/// embeddings are added to its own (0 = none; used by [`CaptionFormat::GridSum`]).
#[derive(Debug, Clone, Default)]
struct Caption {
    ids: Vec<u32>,
    extras: Vec<[u32; EXTRA_SLOTS]>,
}

/// Words summed into one input vector besides the first (content, row, column: at most 3 more).
const EXTRA_SLOTS: usize = 3;

/// The caption of `content` (of the objects `present` only, for a Sort-of-CLEVR scene) in `format`:
/// grid captions on a `grid` × `grid` layout ([`CAPTION_GRID`] but for [`CaptionFormat::Grids`]),
/// sentences on the [`CAPTION_GRID`]. Errors: a word missing from the vocabulary, tokenizer errors.
fn encode_caption(
    encoder: &ConversationEncoder,
    content: &synth::Content,
    present: &[synth::Colour],
    format: CaptionFormat,
    grid: u32,
) -> Result<Caption> {
    let tok = encoder.tokenizer();
    let text = |c: &synth::Content| -> Result<Caption> {
        let t = match (c, format) {
            (synth::Content::SortOfClevr(s), CaptionFormat::Sentence) => s.caption_of(CAPTION_GRID, present),
            (synth::Content::SortOfClevr(s), _) => s.grid_caption_of(grid, present),
            (c, CaptionFormat::Sentence) => c.caption(CAPTION_GRID),
            (c, _) => c.grid_caption(grid),
        };
        let ids = tok.encode(&t, false)?;
        Ok(Caption { extras: vec![[0; EXTRA_SLOTS]; ids.len()], ids })
    };
    if format != CaptionFormat::GridSum {
        return text(content);
    }
    let cells = match content {
        synth::Content::SortOfClevr(s) => s.grid_cells_of(CAPTION_GRID, present),
        c => c.grid_cells(CAPTION_GRID),
    };
    let g = CAPTION_GRID as usize;
    let mut caption = Caption::default();
    for (i, &cell) in cells.iter().enumerate() {
        let ids = synth::grid_caption::grid_sum_words(cell, i / g, i % g)
            .iter()
            .map(|w| {
                tok.inner()
                    .token_to_id(w)
                    .ok_or_else(|| Error::config("caption", format!("word {w:?} is not in the vocabulary")))
            })
            .collect::<Result<Vec<u32>>>()?;
        let mut extras = [0; EXTRA_SLOTS];
        for (slot, &id) in extras.iter_mut().zip(&ids[1..]) {
            *slot = id;
        }
        caption.ids.push(ids[0]);
        caption.extras.push(extras);
    }
    Ok(caption)
}

/// A multi-turn training document: tokens and, per token, whether it is a loss target.
#[derive(Debug, Clone)]
struct Document {
    tokens: Vec<u32>,
    /// Per token, the ids whose embeddings are added to its own ([`Caption::extras`]).
    extras: Vec<[u32; EXTRA_SLOTS]>,
    target: Vec<bool>,
}

/// The grid of a document's caption: one of [`CaptionFormat::GRIDS`] drawn from `rng` for
/// [`CaptionFormat::Grids`], else [`CAPTION_GRID`] (nothing drawn).
fn caption_grid(format: CaptionFormat, rng: &mut ChaCha8Rng) -> u32 {
    match format {
        CaptionFormat::Grids => *CaptionFormat::GRIDS.choose(rng).expect("four grids"),
        _ => CAPTION_GRID,
    }
}

/// The training documents (see the module docs).
fn training_documents(
    encoder: &ConversationEncoder,
    cfg: &LlmPretrainConfig,
    seed: u64,
    short: bool,
    objects: usize,
) -> Result<Vec<Document>> {
    let mut out = vec![];
    let facts = (cfg.fact_scenes, cfg.name_questions, cfg.fact_objects);
    let tasks = corpus_tasks(seed, cfg.scenes, cfg.questions_per_family, cfg.fine_detail_scenes, facts);
    for (config, n) in tasks {
        let generator = Generator::new(config)?;
        for i in 0..n {
            let (content, mut qas) = generator.draw(i as u64)?;
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x005e_ed0f_7e87);
            rng.set_stream(((config.task as u64) << 40) | i as u64);
            let mut present = synth::Colour::ALL.to_vec();
            let objects = scene_objects(cfg.reduced_scenes, seed, i, objects);
            if let (synth::Content::SortOfClevr(scene), true) = (&content, objects < 6) {
                // The curriculum's reduced scene: `objects` colours drawn per scene, kept in colour order.
                let mut sub = ChaCha8Rng::seed_from_u64(seed ^ 0x0b1e_c7a5);
                sub.set_stream(((objects as u64) << 40) | i as u64);
                present = synth::Colour::ALL.choose_multiple(&mut sub, objects.max(1)).copied().collect();
                present.sort_by_key(|&c| c as usize);
                qas = synth::questions::ask_among(scene, config.questions_per_family, &present, &mut sub);
            }
            qas.shuffle(&mut rng);
            let caption =
                encode_caption(encoder, &content, &present, cfg.caption, caption_grid(cfg.caption, &mut rng))?;
            let chunk = if cfg.questions_per_document == 0 { qas.len().max(1) } else { cfg.questions_per_document };
            for turns in qas.chunks(chunk) {
                out.push(document(encoder, &caption, turns, short)?);
            }
        }
    }
    Ok(out)
}

/// Objects shown of Sort-of-CLEVR scene `i` at a curriculum stage of `objects`: the stage's count
/// during the ramp; after it (`objects` = 6) six, or with probability `reduced_scenes` (a seeded draw
/// per scene, the same in every epoch) k uniform in 1..=5.
fn scene_objects(reduced_scenes: f64, seed: u64, i: usize, objects: usize) -> usize {
    if objects < 6 || reduced_scenes <= 0.0 {
        return objects;
    }
    let mut mix = ChaCha8Rng::seed_from_u64(seed ^ 0x0de0_5ced);
    mix.set_stream(i as u64);
    if mix.random::<f64>() < reduced_scenes {
        mix.random_range(1..=5)
    } else {
        6
    }
}

/// One training document: the caption read once, then `turns` as ChatML turns (see the module docs).
fn document(encoder: &ConversationEncoder, caption: &Caption, turns: &[synth::Qa], short: bool) -> Result<Document> {
    let tok = encoder.tokenizer();
    let mut doc = Document { tokens: vec![], extras: vec![], target: vec![] };
    for (t, qa) in turns.iter().enumerate() {
        let question = if short {
            synth::short_question(&qa.question, qa.family).map_err(|e| Error::config("question", e.to_string()))?
        } else {
            qa.question.clone()
        };
        let qa = &synth::Qa { question, ..qa.clone() };
        let (prompt, answer) = if t == 0 {
            let ex = encoder.example(0, &qa.question, &qa.answer, qa.family)?;
            let (p, extras) = with_caption(&ex, caption);
            doc.extras.extend(extras);
            (p, ex.answer)
        } else {
            let p =
                tok.encode(&format!("\n<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n", qa.question), false)?;
            let mut a = tok.encode(&qa.answer, false)?;
            a.push(encoder.im_end());
            (p, a)
        };
        doc.target.extend(std::iter::repeat_n(false, prompt.len()));
        doc.target.extend(std::iter::repeat_n(true, answer.len()));
        doc.tokens.extend(prompt);
        doc.tokens.extend(answer);
        doc.extras.resize(doc.tokens.len(), [0; EXTRA_SLOTS]);
    }
    Ok(doc)
}

/// The prompt of `ex` with `caption` in the place of the image, and its per-token extras.
fn with_caption(ex: &Example, caption: &Caption) -> (Vec<u32>, Vec<[u32; EXTRA_SLOTS]>) {
    let mut p = ex.prefix.clone();
    let mut extras = vec![[0; EXTRA_SLOTS]; p.len()];
    p.extend_from_slice(&caption.ids);
    extras.extend_from_slice(&caption.extras);
    p.extend_from_slice(&ex.suffix);
    extras.resize(p.len(), [0; EXTRA_SLOTS]);
    (p, extras)
}

/// A batch as model input: right-padded token ids (B, L), the extra ids (B, L, [`EXTRA_SLOTS`]) and
/// their weights (1 where an extra is present), the flattened positions whose next token is a
/// target, and those targets.
struct Batch {
    ids: Tensor,
    extras: Tensor,
    extra_weights: Tensor,
    positions: Tensor,
    targets: Tensor,
}

fn collate_documents(docs: &[&Document], dev: &Device) -> Result<Batch> {
    let l = docs.iter().map(|d| d.tokens.len()).max().unwrap_or(0);
    let mut ids = vec![0u32; docs.len() * l];
    let mut extras = vec![0u32; docs.len() * l * EXTRA_SLOTS];
    let (mut positions, mut targets) = (vec![], vec![]);
    for (i, d) in docs.iter().enumerate() {
        ids[i * l..i * l + d.tokens.len()].copy_from_slice(&d.tokens);
        for (t, e) in d.extras.iter().enumerate() {
            extras[(i * l + t) * EXTRA_SLOTS..(i * l + t + 1) * EXTRA_SLOTS].copy_from_slice(e);
        }
        for (t, (&tok, &is_target)) in d.tokens.iter().zip(&d.target).enumerate() {
            if is_target && t > 0 {
                positions.push((i * l + t - 1) as u32);
                targets.push(tok);
            }
        }
    }
    let n = positions.len();
    let weights: Vec<f32> = extras.iter().map(|&e| f32::from(u8::from(e != 0))).collect();
    Ok(Batch {
        ids: Tensor::from_vec(ids, (docs.len(), l), dev)?,
        extras: Tensor::from_vec(extras, (docs.len(), l, EXTRA_SLOTS), dev)?,
        extra_weights: Tensor::from_vec(weights, (docs.len(), l, EXTRA_SLOTS), dev)?,
        positions: Tensor::from_vec(positions, n, dev)?,
        targets: Tensor::from_vec(targets, n, dev)?,
    })
}

/// A single-turn held-out question: the ChatML prompt with the caption in the place of the image
/// (and its extras), the answer + `<|im_end|>`, the family.
struct HeldOut {
    prompt: Vec<u32>,
    extras: Vec<[u32; EXTRA_SLOTS]>,
    answer: Vec<u32>,
    family: synth::Family,
}

/// The held-out questions: `per_family` per family of `scenes` Sort-of-CLEVR scenes, one per
/// `fine` fine-detail scene and `per_family` per `facts` object-facts scene, every Sort-of-CLEVR
/// scene with all its objects.
fn documents(
    encoder: &ConversationEncoder,
    caption: CaptionFormat,
    seed: u64,
    scenes: usize,
    per_family: usize,
    fine: usize,
    (facts, fact_objects): (usize, u32),
) -> Result<Vec<HeldOut>> {
    let mut out = vec![];
    // Held-out fact scenes ask facts only, so the fact accuracy is comparable across corpora.
    let tasks = corpus_tasks(seed, scenes, per_family, fine, (facts, 0, fact_objects));
    for (config, n) in tasks {
        let generator = Generator::new(config)?;
        for i in 0..n {
            let (content, qas) = generator.draw(i as u64)?;
            let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x0006_e1d5);
            rng.set_stream(((config.task as u64) << 40) | i as u64);
            let cap = encode_caption(encoder, &content, &synth::Colour::ALL, caption, caption_grid(caption, &mut rng))?;
            for qa in qas {
                let ex = encoder.example(0, &qa.question, &qa.answer, qa.family)?;
                let (prompt, extras) = with_caption(&ex, &cap);
                out.push(HeldOut { prompt, extras, answer: ex.answer, family: qa.family });
            }
        }
    }
    Ok(out)
}

/// The LLM alone, for text: embeddings → decoder → LM head on the answer positions.
struct TextLm {
    decoder: Decoder,
}

impl TextLm {
    /// Mean cross-entropy of the target tokens: `ids` (B, L), `positions` into the flattened
    /// (B·L) positions, `targets` the token each position predicts.
    fn loss(&self, batch: &Batch) -> Result<Tensor> {
        let (b, l) = batch.ids.dims2()?;
        let hidden = self.decoder.forward_hidden(&self.embed(&batch.ids, &batch.extras, &batch.extra_weights)?)?;
        let h = hidden.dim(D::Minus1)?;
        let picked = hidden.reshape((b * l, h))?.index_select(&batch.positions, 0)?;
        let logits = self.decoder.lm_head(&picked.unsqueeze(0)?)?.squeeze(0)?;
        Ok(candle_nn::loss::cross_entropy(&logits, &batch.targets)?)
    }

    /// Input vectors (B, L, H): each token's embedding plus its extras' (`extras` (B, L, S) ids
    /// weighted by `weights` (B, L, S)).
    fn embed(&self, ids: &Tensor, extras: &Tensor, weights: &Tensor) -> Result<Tensor> {
        let (b, l, slots) = extras.dims3()?;
        let base = self.decoder.embed_tokens(ids)?;
        let h = base.dim(D::Minus1)?;
        let extra = self.decoder.embed_tokens(&extras.reshape((b, l * slots))?)?.reshape((b, l, slots, h))?;
        let extra = extra.broadcast_mul(&weights.unsqueeze(D::Minus1)?.to_dtype(extra.dtype())?)?.sum(2)?;
        Ok((base + extra)?)
    }
}

/// Held-out exact-match accuracy of greedy answers per question family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextAccuracy {
    /// Family name → (correct, asked).
    pub families: BTreeMap<String, (usize, usize)>,
}

impl TextAccuracy {
    /// Accuracy of one family, if asked.
    pub fn family(&self, name: &str) -> Option<f64> {
        self.families.get(name).map(|&(c, n)| c as f64 / n.max(1) as f64)
    }
}

/// Greedy answers of `lm` to `docs` (batches of 64 right-padded prompts; at most the longest answer
/// + 1 new tokens), scored by exact match of the answer tokens and `<|im_end|>`.
fn text_accuracy(lm: &TextLm, docs: &[HeldOut], dev: &Device) -> Result<TextAccuracy> {
    let mut families: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    let max_new = docs.iter().map(|d| d.answer.len()).max().unwrap_or(1);
    for chunk in docs.chunks(64) {
        let mut seqs: Vec<Vec<u32>> = chunk.iter().map(|d| d.prompt.clone()).collect();
        let start: Vec<usize> = seqs.iter().map(Vec::len).collect();
        let mut done = vec![false; chunk.len()];
        for _ in 0..max_new {
            let l = seqs.iter().map(Vec::len).max().unwrap_or(0);
            let mut ids = vec![0u32; chunk.len() * l];
            for (i, s) in seqs.iter().enumerate() {
                ids[i * l..i * l + s.len()].copy_from_slice(s);
            }
            let mut extras = vec![0u32; chunk.len() * l * EXTRA_SLOTS];
            for (i, d) in chunk.iter().enumerate() {
                for (t, e) in d.extras.iter().enumerate() {
                    extras[(i * l + t) * EXTRA_SLOTS..(i * l + t + 1) * EXTRA_SLOTS].copy_from_slice(e);
                }
            }
            let weights: Vec<f32> = extras.iter().map(|&e| f32::from(u8::from(e != 0))).collect();
            let ids = Tensor::from_vec(ids, (chunk.len(), l), dev)?;
            let extras = Tensor::from_vec(extras, (chunk.len(), l, EXTRA_SLOTS), dev)?;
            let weights = Tensor::from_vec(weights, (chunk.len(), l, EXTRA_SLOTS), dev)?;
            let hidden = lm.decoder.forward_hidden(&lm.embed(&ids, &extras, &weights)?)?.detach();
            for (i, s) in seqs.iter_mut().enumerate() {
                if done[i] {
                    continue;
                }
                let last = hidden.narrow(0, i, 1)?.narrow(1, s.len() - 1, 1)?;
                let next = lm.decoder.lm_head(&last)?.flatten_all()?.argmax(0)?.to_scalar::<u32>()?;
                s.push(next);
                done[i] = s.len() - start[i] >= chunk[i].answer.len() || Some(&next) == chunk[i].answer.last();
            }
            if done.iter().all(|&d| d) {
                break;
            }
        }
        for (i, d) in chunk.iter().enumerate() {
            let e = families.entry(d.family.name().to_string()).or_default();
            e.1 += 1;
            if seqs[i][start[i]..] == d.answer[..] {
                e.0 += 1;
            }
        }
    }
    Ok(TextAccuracy { families })
}

/// Reported after every step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LlmStepInfo {
    /// Steps completed.
    pub step: usize,
    /// Total steps.
    pub total: usize,
    /// Loss of this step (nats per answer token).
    pub loss: f64,
    /// Documents per second in this invocation.
    pub docs_per_s: f64,
}

/// What a finished run records ([`MANIFEST_FILE`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlmManifest {
    /// The command that regenerates the directory bit for bit (on the same CPU class).
    pub command: String,
    /// The settings.
    pub config: LlmPretrainConfig,
    /// Corpus format version ([`CORPUS_VERSION`]).
    pub corpus: String,
    /// N: LLM parameters (embedding counted once, tied).
    pub parameters: usize,
    /// Training documents of the final (six-object) curriculum stage.
    pub documents: usize,
    /// Steps completed.
    pub steps: usize,
    /// Wall time of the training steps over all invocations, s.
    pub wall_s: f64,
    /// Mean loss of the last ≤ 200 steps.
    pub final_loss: f64,
    /// Held-out text accuracy per family (greedy, exact match).
    pub held_out_accuracy: BTreeMap<String, f64>,
    /// Held-out questions per family.
    pub held_out_questions: BTreeMap<String, usize>,
    /// SHA-256 (hex) of each shipped file.
    pub sha256: BTreeMap<String, String>,
}

impl LlmManifest {
    /// The recorded SHA-256 of the weights file.
    pub fn weights_sha256(&self) -> Option<&str> {
        self.sha256.get(engine::checkpoint::WEIGHTS_FILE).map(String::as_str)
    }
}

/// SHA-256 of a file as lowercase hex. Errors: I/O.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

/// Reads `dir`'s manifest and checks every shipped file's SHA-256.
/// Errors: a missing or unreadable manifest, a missing file, or a file whose hash differs
/// ([`Error::Checkpoint`] naming the file).
pub fn verify_manifest(dir: &Path) -> Result<LlmManifest> {
    let path = dir.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let manifest: LlmManifest =
        serde_json::from_str(&text).map_err(|e| Error::Checkpoint { path: path.clone(), msg: e.to_string() })?;
    for file in SHIPPED_FILES {
        let expected = manifest.sha256.get(file).ok_or_else(|| Error::Checkpoint {
            path: path.clone(),
            msg: format!("no SHA-256 recorded for `{file}`"),
        })?;
        let got = sha256_file(&dir.join(file))?;
        if &got != expected {
            return Err(Error::Checkpoint {
                path: dir.join(file),
                msg: format!(
                    "SHA-256 {got} differs from the manifest's {expected}: the file was changed after pretraining"
                ),
            });
        }
    }
    Ok(manifest)
}

/// Summary of an invocation.
#[derive(Debug, Clone)]
pub struct LlmPretrainReport {
    /// Steps completed over all invocations.
    pub steps: usize,
    /// Whether all steps are done (the manifest is then written).
    pub finished: bool,
    /// The manifest, when finished.
    pub manifest: Option<LlmManifest>,
}

/// Pretrains (or resumes) preset `cfg.llm` into `out_dir`; see the module docs. `stop_after` ends
/// the invocation after that many steps (with a checkpoint); rerunning continues. `command` is
/// recorded in the manifest. Errors: bad settings, a resume whose settings differ, a non-finite
/// loss, I/O.
pub fn pretrain_llm(
    cfg: &LlmPretrainConfig,
    out_dir: &Path,
    stop_after: Option<usize>,
    command: &str,
    progress: &mut dyn FnMut(&LlmStepInfo),
) -> Result<LlmPretrainReport> {
    cfg.check()?;
    let dev = Device::Cpu;
    let size = LlmSize::from_name(&cfg.llm)?;
    let extra_words = match cfg.caption {
        CaptionFormat::Sentence => vec![],
        CaptionFormat::Grid | CaptionFormat::Grids => synth::grid_caption::vocabulary(),
        CaptionFormat::GridSum => synth::grid_caption::grid_sum_vocabulary(CAPTION_GRID as usize),
    };
    let tokenizer_json = synth::build_tokenizer(&extra_words)?
        .to_string(false)
        .map_err(|e| Error::config("tokenizer", e.to_string()))?
        .into_bytes();
    crate::checkpoint_io::recover(out_dir)?;
    if out_dir.join(MANIFEST_FILE).is_file() {
        // A finished run: the same settings return it (after checking its files), others are refused.
        let manifest = verify_manifest(out_dir)?;
        if manifest.config != *cfg {
            return Err(Error::Checkpoint {
                path: out_dir.to_path_buf(),
                msg: format!(
                    "holds a finished pretraining with other settings ({}); use another directory",
                    serde_json::to_string(&manifest.config).unwrap_or_default()
                ),
            });
        }
        return Ok(LlmPretrainReport { steps: manifest.steps, finished: true, manifest: Some(manifest) });
    }
    std::fs::create_dir_all(out_dir).map_err(|e| Error::io(out_dir, e))?;
    let tok_path = out_dir.join("tokenizer.json");
    std::fs::write(&tok_path, &tokenizer_json).map_err(|e| Error::io(&tok_path, e))?;
    let encoder = ConversationEncoder::new(&tok_path)?;
    let corpus_seed = CORPUS_SEED_OFFSET + cfg.seed;
    // The documents of a curriculum stage: (short questions?, objects per scene) → documents, the
    // same scenes in the same order in every stage; only the current stage is held in memory.
    let stage_of = |step: usize| {
        let objects = if step < cfg.object_ramp_steps { 1 + 5 * step / cfg.object_ramp_steps } else { 6 };
        (step < cfg.short_question_steps, objects)
    };
    let make_stage = |(short, objects): (bool, usize)| training_documents(&encoder, cfg, corpus_seed, short, objects);
    let (mut stage, mut docs) = (None, vec![]);
    let held_facts = if cfg.fact_scenes > 0 { cfg.eval_scenes } else { 0 };
    let held = documents(
        &encoder,
        cfg.caption,
        corpus_seed + 1,
        cfg.eval_scenes,
        1,
        cfg.eval_scenes,
        (held_facts, cfg.fact_objects),
    )?;

    let llm_cfg = size.decoder_config(encoder.vocab_size(), encoder.im_end())?;
    let hf_config = size.hf_config(encoder.vocab_size(), encoder.im_end());
    let varmap = VarMap::new();
    let mut decoder = Decoder::new(&llm_cfg, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
    decoder.set_mode(Mode::Differentiable);
    let lm = TextLm { decoder };
    crate::init::reinit_with_std(&varmap, cfg.seed, cfg.init_std)?;
    let mut settings = cfg.fingerprint();
    if let Some(init) = &cfg.init {
        // Continued pretraining: the weights of a finished run of the same preset and vocabulary.
        let dir = Path::new(init);
        let manifest = verify_manifest(dir)?;
        if manifest.config.llm != cfg.llm {
            return Err(Error::config(
                "init",
                format!("{init} holds the `{}` preset, this run trains `{}`", manifest.config.llm, cfg.llm),
            ));
        }
        let theirs = dir.join("tokenizer.json");
        if std::fs::read(&theirs).map_err(|e| Error::io(&theirs, e))? != tokenizer_json {
            return Err(Error::config("init", format!("{} has another vocabulary than this run's", theirs.display())));
        }
        let mut vm = varmap.clone();
        vm.load(dir.join(engine::checkpoint::WEIGHTS_FILE))?;
        if let Some(o) = settings.as_object_mut() {
            o.insert("init_sha256".into(), json!(manifest.weights_sha256()));
        }
    }
    let vars = crate::vlm_train::named_vars(&varmap)?;
    let mut opt = AdamW::new(vars, cfg.weight_decay)?;
    let schedule = Schedule {
        peak_lr: cfg.lr,
        min_lr: 0.0,
        warmup_steps: ((cfg.steps as f64 * cfg.warmup_ratio).ceil() as usize).max(1),
        total_steps: cfg.steps,
    };

    let mut state = TrainerState { step: 0, settings, losses: vec![], wall_s: 0.0 };
    if let Some((saved, moments)) = load_trainer_state(out_dir)? {
        if saved.settings != state.settings {
            return Err(Error::Checkpoint {
                path: out_dir.to_path_buf(),
                msg: format!("cannot resume: saved settings {} differ from {}", saved.settings, state.settings),
            });
        }
        let mut vm = varmap.clone();
        vm.load(out_dir.join(engine::checkpoint::WEIGHTS_FILE))?;
        opt.load_state(&moments, saved.step)?;
        state = saved;
    }

    // Each curriculum stage is read in epochs of its own seeded permutation (a stage's document
    // count depends on its questions: `ask_among` skips ambiguous ones).
    let (mut perm_epoch, mut perm) = ((usize::MAX, 0), vec![]);
    let t0 = Instant::now();
    let wall_before = state.wall_s;
    let mut ran = 0;
    while state.step < cfg.steps {
        let step = state.step;
        if stage != Some(stage_of(step)) {
            stage = Some(stage_of(step));
            docs = make_stage(stage_of(step))?;
        }
        let n = docs.len();
        let mut batch_docs: Vec<usize> = Vec::with_capacity(cfg.batch_size);
        for j in 0..cfg.batch_size {
            let p = step * cfg.batch_size + j;
            if (p / n, n) != perm_epoch {
                perm_epoch = (p / n, n);
                perm = (0..n).collect();
                perm.shuffle(&mut ChaCha8Rng::seed_from_u64(
                    cfg.seed ^ ((p / n) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
                ));
            }
            batch_docs.push(perm[p % n]);
        }
        let batch_docs: Vec<&Document> = batch_docs.into_iter().map(|k| &docs[k]).collect();
        let batch = collate_documents(&batch_docs, &dev)?;
        let loss = lm.loss(&batch)?;
        let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        if !value.is_finite() {
            return Err(Error::NonFiniteLoss { step, loss: value });
        }
        let mut grads = loss.backward()?;
        clip_grad_norm(&mut grads, opt.vars(), cfg.max_grad_norm)?;
        opt.step(&grads, schedule.lr(step))?;
        state.step += 1;
        state.losses.push(value);
        ran += 1;
        progress(&LlmStepInfo {
            step: state.step,
            total: cfg.steps,
            loss: value,
            docs_per_s: (ran * cfg.batch_size) as f64 / t0.elapsed().as_secs_f64().max(1e-9),
        });
        let stop = stop_after.is_some_and(|k| ran >= k);
        if state.step.is_multiple_of(cfg.save_every) || state.step == cfg.steps || stop {
            state.wall_s = wall_before + t0.elapsed().as_secs_f64();
            save_checkpoint(out_dir, &hf_config, &varmap, &tokenizer_json, Some((&state, &opt)))?;
        }
        if stop {
            break;
        }
    }
    if state.step < cfg.steps {
        return Ok(LlmPretrainReport { steps: state.step, finished: false, manifest: None });
    }

    // Finished: held-out accuracy, then the shipped directory (weights, config, tokenizer, manifest)
    // without the trainer state.
    let acc = text_accuracy(&lm, &held, &dev)?;
    save_checkpoint(out_dir, &hf_config, &varmap, &tokenizer_json, None)?;
    let mut sha256 = BTreeMap::new();
    for file in SHIPPED_FILES {
        sha256.insert(file.to_string(), sha256_file(&out_dir.join(file))?);
    }
    let recent = &state.losses[state.losses.len().saturating_sub(200)..];
    let manifest = LlmManifest {
        command: command.to_string(),
        config: cfg.clone(),
        corpus: CORPUS_VERSION.into(),
        parameters: size.num_parameters(encoder.vocab_size()),
        documents: docs.len(),
        steps: state.step,
        wall_s: state.wall_s,
        final_loss: recent.iter().sum::<f64>() / recent.len().max(1) as f64,
        held_out_accuracy: acc.families.keys().map(|k| (k.clone(), acc.family(k).unwrap_or(0.0))).collect(),
        held_out_questions: acc.families.iter().map(|(k, &(_, n))| (k.clone(), n)).collect(),
        sha256,
    };
    write_json_atomic(&out_dir.join(LOSSES_FILE), &state.losses)?;
    write_json_atomic(&out_dir.join(MANIFEST_FILE), &manifest)?;
    Ok(LlmPretrainReport { steps: state.step, finished: true, manifest: Some(manifest) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduced_scenes_keep_the_drawn_fraction_after_the_ramp_only() {
        let n = 4000;
        for (fraction, seed) in [(0.5, 3), (0.2, 4)] {
            let ks: Vec<usize> = (0..n).map(|i| scene_objects(fraction, seed, i, 6)).collect();
            let reduced = ks.iter().filter(|&&k| k < 6).count() as f64 / n as f64;
            // Binomial(4000, p): 4 standard deviations are below 0.032.
            assert!((reduced - fraction).abs() < 0.032, "fraction {fraction}: {reduced} reduced");
            for k in 1..=5 {
                let share = ks.iter().filter(|&&x| x == k).count() as f64 / n as f64;
                assert!((share - fraction / 5.0).abs() < 0.025, "k = {k}: share {share}");
            }
            // The same draw every time it is asked (every epoch of the stage).
            assert!((0..n).all(|i| scene_objects(fraction, seed, i, 6) == ks[i]));
        }
        // During the ramp the stage's count holds; with no fraction, six.
        assert!((0..100).all(|i| scene_objects(0.5, 0, i, 3) == 3));
        assert!((0..100).all(|i| scene_objects(0.0, 0, i, 6) == 6));
    }

    /// `grids` captions: the grid is drawn from 1, 2, 4 and 8 about equally often (other formats
    /// keep the tower's 8 × 8), and an object-facts caption on an n × n grid is n² words, "nothing"
    /// but for the object's word at the cell of its centre (row ⌊y·n/80⌋, column ⌊x·n/80⌋).
    #[test]
    fn grids_captions_put_the_object_word_in_its_cell_of_a_drawn_grid() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let draws: Vec<u32> = (0..4000).map(|_| caption_grid(CaptionFormat::Grids, &mut rng)).collect();
        for n in [1u32, 2, 4, 8] {
            let share = draws.iter().filter(|&&g| g == n).count() as f64 / draws.len() as f64;
            // Binomial(4000, 1/4): 4 standard deviations are below 0.028.
            assert!((share - 0.25).abs() < 0.028, "grid {n}: share {share}");
        }
        assert_eq!(caption_grid(CaptionFormat::Grid, &mut rng), CAPTION_GRID);
        assert_eq!(caption_grid(CaptionFormat::Sentence, &mut rng), CAPTION_GRID);

        let dir = std::env::temp_dir().join(format!("vlmscale-grids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tok_path = dir.join("tokenizer.json");
        synth::build_tokenizer(&synth::grid_caption::vocabulary()).unwrap().save(&tok_path, false).unwrap();
        let encoder = ConversationEncoder::new(&tok_path).unwrap();
        let generator =
            Generator::new(DatasetConfig { task: Task::ObjectFacts, seed: 3, ..DatasetConfig::default() }).unwrap();
        for i in 0..20u64 {
            let (content, _) = generator.draw(i).unwrap();
            let synth::Content::ObjectFacts(scene, colour, _) = &content else { panic!("object facts") };
            let object = scene.objects.iter().find(|o| o.colour == *colour).unwrap();
            let word = format!("{}{}", colour.name(), object.shape.answer());
            for n in [1u32, 2, 4, 8] {
                let cap = encode_caption(&encoder, &content, &[*colour], CaptionFormat::Grids, n).unwrap();
                let words: Vec<String> =
                    cap.ids.iter().map(|&id| encoder.tokenizer().inner().id_to_token(id).unwrap()).collect();
                assert_eq!(words.len(), (n * n) as usize, "scene {i}, grid {n}: {words:?}");
                let size = scene.config.image_size as u64;
                let at = (object.y as u64 * n as u64 / size) * n as u64 + object.x as u64 * n as u64 / size;
                for (c, w) in words.iter().enumerate() {
                    let w = w.trim_start_matches(['Ġ', ' ']);
                    let want = if c as u64 == at { word.as_str() } else { "nothing" };
                    assert_eq!(w, want, "scene {i}, grid {n}, cell {c}: {words:?}");
                }
            }
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    /// A corpus of facts alone (no Sort-of-CLEVR scenes) is allowed; an empty corpus is an error.
    #[test]
    fn scenes_may_be_zero_when_another_part_of_the_corpus_remains() {
        let mut cfg = LlmPretrainConfig::new("xs");
        cfg.scenes = 0;
        cfg.fine_detail_scenes = 0;
        cfg.fact_scenes = 100;
        assert!(cfg.check().is_ok());
        cfg.fact_scenes = 0;
        let e = cfg.check().unwrap_err().to_string();
        assert!(e.contains("scenes") && e.contains("empty"), "{e}");
        cfg.fine_detail_scenes = 10;
        assert!(cfg.check().is_ok());
    }

    /// With `fact_objects` = 3 every fact document's caption writes three objects and its question
    /// names one of their colours; the held-out split is drawn the same way; 1 leaves the
    /// fingerprint (and so finished runs) unchanged; 0 and 7 are refused.
    #[test]
    fn fact_objects_caption_several_objects_and_name_the_asked_one() {
        let mut cfg = LlmPretrainConfig::new("xs");
        assert!(cfg.fingerprint().get("fact_objects").is_none());
        (cfg.scenes, cfg.fine_detail_scenes, cfg.fact_scenes, cfg.fact_objects) = (0, 0, 30, 3);
        assert_eq!(cfg.fingerprint()["fact_objects"], 3);
        let dir = std::env::temp_dir().join(format!("vlmscale-fact-objects-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tok_path = dir.join("tokenizer.json");
        synth::build_tokenizer(&[]).unwrap().save(&tok_path, false).unwrap();
        let encoder = ConversationEncoder::new(&tok_path).unwrap();
        let docs = training_documents(&encoder, &cfg, 0, false, 6).unwrap();
        assert_eq!(docs.len(), 30);
        for d in &docs {
            let text = encoder.tokenizer().inner().decode(&d.tokens, false).unwrap();
            assert_eq!(text.matches(" at row ").count(), 3, "{text}");
            let named = synth::Colour::ALL.iter().filter(|c| text.contains(&format!(" of the {} object?", c.name())));
            assert_eq!(named.count(), 1, "{text}");
        }
        let held = documents(&encoder, cfg.caption, 1, 0, 1, 0, (10, cfg.fact_objects)).unwrap();
        assert_eq!(held.len(), 10);
        for h in &held {
            let text = encoder.tokenizer().inner().decode(&h.prompt, false).unwrap();
            assert_eq!(text.matches(" at row ").count(), 3, "{text}");
        }
        std::fs::remove_dir_all(&dir).ok();
        for bad in [0, 7] {
            cfg.fact_objects = bad;
            assert!(cfg.check().unwrap_err().to_string().contains("fact_objects"));
        }
    }

    #[test]
    fn reduced_scenes_is_checked_and_absent_from_the_fingerprint_when_zero() {
        let mut cfg = LlmPretrainConfig::new("xs");
        // Runs made before the setting existed resume and verify unchanged.
        assert!(cfg.fingerprint().get("reduced_scenes").is_none());
        cfg.reduced_scenes = 0.25;
        assert_eq!(cfg.fingerprint()["reduced_scenes"], 0.25);
        for bad in [1.0, -0.1, f64::NAN] {
            cfg.reduced_scenes = bad;
            let e = cfg.check().unwrap_err().to_string();
            assert!(e.contains("reduced_scenes"), "{e}");
        }
    }
}

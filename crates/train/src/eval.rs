//! Evaluation: exact-match accuracy per question family on a held-out split, answering with the
//! engine's inference path — fused kernels, the LLaVA splice (`engine::text::input_embeddings`) and
//! greedy decoding with the KV cache (`engine::generate::generate`) — from a saved checkpoint.
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use engine::checkpoint::{Checkpoint, VisionTowerSource};
use engine::generate::{generate, GenerateConfig};
use engine::vision::load_clip_tower;
use models::vision::{ClipVisionTower, VisionFeatures};
use serde::{Deserialize, Serialize};
use synth::{Group, ImageSample, Qa};

use crate::batch::ConversationEncoder;
use crate::checkpoint_io::{read_saved_vlm, write_json_atomic};
use crate::features::FeatureSet;
use crate::model::TrainableVlm;
use crate::{Error, Result};

/// Accuracy of one family.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FamilyScore {
    /// Exactly matching answers.
    pub correct: usize,
    /// Questions.
    pub total: usize,
    /// correct / total.
    pub accuracy: f64,
}

/// Result of [`evaluate`], written as JSON by [`write_report`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalReport {
    /// Checkpoint directory.
    pub model: String,
    /// Per family (`shape`, `left`, …).
    pub families: BTreeMap<String, FamilyScore>,
    /// Per group (`non_relational`, `relational`, `fine_detail`).
    pub groups: BTreeMap<String, FamilyScore>,
    /// All questions.
    pub overall: FamilyScore,
    /// Wall time, s.
    pub wall_s: f64,
    /// Questions answered per second.
    pub questions_per_s: f64,
}

/// A checkpoint loaded for inference: tower, VLM (fused kernels) and conversation encoder.
pub struct LoadedVlm {
    /// The frozen tower.
    pub tower: ClipVisionTower,
    /// Compressor + projector + decoder.
    pub model: TrainableVlm,
    /// Tokenizer and template.
    pub encoder: ConversationEncoder,
}

/// Loads checkpoint `dir` through the engine's `Checkpoint` (which validates `config.json` and the
/// weight files). Errors: missing/corrupt files, missing tensors, unknown compressor, tower not found.
pub fn load_vlm(dir: &Path) -> Result<LoadedVlm> {
    let ckpt = Checkpoint::open(dir)?;
    let saved = read_saved_vlm(dir)?;
    let dev = Device::Cpu;
    let model = TrainableVlm::new(&saved.arch, false, ckpt.var_builder(DType::F32, &dev)?)?;
    let tower_dir = match ckpt.vision_tower_source(None)? {
        VisionTowerSource::Directory(d) => d,
        VisionTowerSource::Embedded => saved.tower_dir,
    };
    let tcfg = models::vision::ClipVisionConfig::from_file(&tower_dir.join("config.json"))?;
    let tower = load_clip_tower(&tower_dir, tcfg.num_hidden_layers, models::Mode::Inference, &dev)?;
    let encoder = ConversationEncoder::new(&ckpt.tokenizer_path()?)?;
    Ok(LoadedVlm { tower, model, encoder })
}

impl LoadedVlm {
    /// Greedy answer (≤ `max_new_tokens` tokens, stopping at `<|im_end|>`) to `question` about the
    /// image whose features are `features` (batch 1). Errors: tokenizer, shapes, context window.
    pub fn answer(&mut self, features: &VisionFeatures, question: &str, max_new_tokens: usize) -> Result<String> {
        let tok = self.encoder.tokenizer();
        let query = if self.model.compressor.needs_query() {
            let ids = tok.tokenize_query(question)?;
            let n = ids.len();
            Some(self.model.decoder.query_embedding(&Tensor::from_vec(ids, (1, n), &Device::Cpu)?, None)?)
        } else {
            None
        };
        let visual = self.model.visual_embeddings(features, query.as_ref())?;
        let prompt = tok.tokenize_with_image(&self.encoder.template().prompt(question, true))?;
        let embeds = engine::text::input_embeddings(&self.model.decoder, &prompt, Some(&visual))?;
        let cfg = GenerateConfig {
            max_new_tokens,
            stop_token_ids: tok.stop_token_ids(self.encoder.template())?,
            ..GenerateConfig::default()
        };
        let out = generate(&mut self.model.decoder, &embeds, &cfg, |_| Ok(()))?;
        Ok(tok.decode(&out.tokens, true)?.trim().to_string())
    }
}

fn score(correct: usize, total: usize) -> FamilyScore {
    FamilyScore { correct, total, accuracy: if total == 0 { 0.0 } else { correct as f64 / total as f64 } }
}

/// Exact-match accuracy of checkpoint `model_dir` on `samples` (at most `max_questions` questions,
/// in order). `progress(done, total)` after each question.
/// Errors: loading the checkpoint, images of the wrong size; a question that cannot be answered (e.g.
/// longer than the context window) as [`Error::Question`] naming its image and text.
pub fn evaluate(
    model_dir: &Path,
    samples: &[ImageSample],
    max_questions: Option<usize>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EvalReport> {
    let mut vlm = load_vlm(model_dir)?;
    let t0 = Instant::now();
    let features = FeatureSet::compute(&vlm.tower, &samples.iter().map(|s| &s.image).collect::<Vec<_>>(), 64)?;
    let total_q: usize = samples.iter().map(|s| s.qas.len()).sum::<usize>().min(max_questions.unwrap_or(usize::MAX));
    let mut tally = Tally::default();
    let mut done = 0;
    'outer: for (i, s) in samples.iter().enumerate() {
        let f = features.gather(&Tensor::new(&[i as u32], &Device::Cpu)?, DType::F32)?;
        for qa in &s.qas {
            if done >= total_q {
                break 'outer;
            }
            let q = qa.question.strip_prefix("<image>\n").unwrap_or(&qa.question);
            let got = vlm.answer(&f, q, 8).map_err(|e| Error::Question {
                image: s.id.clone(),
                question: q.to_string(),
                inner: Box::new(e),
            })?;
            tally.add(qa, &got);
            done += 1;
            progress(done, total_q);
        }
    }
    if done == 0 {
        return Err(Error::config("data", "no questions to evaluate"));
    }
    let wall = t0.elapsed().as_secs_f64();
    Ok(tally.report(&model_dir.display().to_string(), wall))
}

/// Exact-match scoring of answers per family and group: an answer is right when it equals the
/// reference answer after trimming surrounding whitespace (both sides), nothing else.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    families: BTreeMap<String, (usize, usize)>,
    groups: BTreeMap<String, (usize, usize)>,
}

impl Tally {
    /// Scores one generated answer `got` to `qa`.
    pub fn add(&mut self, qa: &Qa, got: &str) {
        let ok = (got.trim() == qa.answer.trim()) as usize;
        let group = match qa.family.group() {
            Group::NonRelational => "non_relational",
            Group::Relational => "relational",
            Group::FineDetail => "fine_detail",
            Group::Knowledge => "knowledge",
        };
        for (map, key) in [(&mut self.families, qa.family.name()), (&mut self.groups, group)] {
            let e = map.entry(key.to_string()).or_default();
            e.0 += ok;
            e.1 += 1;
        }
    }

    /// The report of everything added (`model` names the checkpoint, `wall_s` the time taken).
    pub fn report(&self, model: &str, wall_s: f64) -> EvalReport {
        let (correct, done) = self.families.values().fold((0, 0), |(c, t), v| (c + v.0, t + v.1));
        EvalReport {
            model: model.to_string(),
            families: self.families.iter().map(|(k, &(c, t))| (k.clone(), score(c, t))).collect(),
            groups: self.groups.iter().map(|(k, &(c, t))| (k.clone(), score(c, t))).collect(),
            overall: score(correct, done),
            wall_s,
            questions_per_s: done as f64 / wall_s.max(1e-9),
        }
    }
}

/// Writes `report` as pretty JSON atomically. Errors: I/O.
pub fn write_report(path: &Path, report: &EvalReport) -> Result<()> {
    write_json_atomic(path, report)
}

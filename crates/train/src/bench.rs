//! Training throughput (`vlmscale bench train`): samples/s and achieved GFLOP/s of the VLM training
//! step for each LLM size preset, on random frozen-tower features (the tower is not part of the step).
//!
//! FLOPs per step are estimated as 6 · P · T (forward 2·P·T + backward 4·P·T, Kaplan et al. 2020) with
//! P the trainable parameters touched per token — LLM (without the embedding table, a lookup) for the
//! Q + V LLM positions, compressor + projector for the G² features — so the GFLOP/s figure is a
//! lower bound that ignores attention-score FLOPs.
use std::time::Instant;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use serde::Serialize;
use synth::{DatasetConfig, Generator};

use crate::batch::{collate, ConversationEncoder};
use crate::features::FeatureSet;
use crate::model::{CompressorKind, TrainableVlm, VlmArch};
use crate::optim::{clip_grad_norm, AdamW};
use crate::sizes::LlmSize;
use crate::{Error, Result};

/// One row of the benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// Preset name.
    pub llm: String,
    /// N (LLM parameters).
    pub llm_parameters: usize,
    /// Compressor.
    pub compressor: String,
    /// V.
    pub visual_tokens: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Mean seconds per optimiser step (after one warm-up step).
    pub step_s: f64,
    /// Questions per second.
    pub samples_per_s: f64,
    /// Estimated achieved GFLOP/s (see the module docs).
    pub gflops: f64,
}

/// Times `steps` training steps (after one warm-up step) for each preset in `sizes`, with a tower of
/// width `vision_dim` and grid `grid` (features random), and a tokenizer built in memory.
/// Errors: unknown size or compressor, V not producible, `steps == 0`.
pub fn bench_train(
    sizes: &[&str],
    compressor: &str,
    visual_tokens: usize,
    batch_size: usize,
    steps: usize,
    vision_dim: usize,
    grid: usize,
) -> Result<Vec<BenchRow>> {
    if steps == 0 || batch_size == 0 {
        return Err(Error::config("steps/batch_size", "must be > 0"));
    }
    let dev = Device::Cpu;
    let kind = CompressorKind::from_name(compressor)?;
    let dir = std::env::temp_dir().join(format!("vlmscale-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let tok = dir.join("tokenizer.json");
    synth::save_tokenizer(&synth::build_tokenizer(&[])?, &tok)?;
    let enc = ConversationEncoder::new(&tok)?;
    let _ = std::fs::remove_dir_all(&dir);
    let samples = Generator::new(DatasetConfig::default())?.generate(0..batch_size as u64)?;
    let examples = samples
        .iter()
        .enumerate()
        .map(|(i, s)| enc.example(i, &s.qas[0].question, &s.qas[0].answer, s.qas[0].family))
        .collect::<Result<Vec<_>>>()?;
    let batch = collate(&examples.iter().collect::<Vec<_>>(), visual_tokens, &dev)?;
    let n = samples.len();
    let features = FeatureSet {
        single: Tensor::randn(0f32, 1.0, (n, grid * grid, vision_dim), &dev)?,
        multi: Tensor::randn(0f32, 1.0, (n, grid * grid, 4 * vision_dim), &dev)?,
        grid,
    };
    let feats = features.gather(&batch.image_index, DType::F32)?;
    let lt = batch.text_ids.dim(1)?;
    let mut rows = vec![];
    for name in sizes {
        let size = LlmSize::from_name(name)?;
        let llm = size.decoder_config(enc.vocab_size(), enc.im_end())?;
        let arch = VlmArch { llm, compressor: kind, visual_tokens, vision_dim, grid };
        let varmap = VarMap::new();
        let model = TrainableVlm::new(&arch, true, VarBuilder::from_varmap(&varmap, DType::F32, &dev))?;
        crate::init::reinit(&varmap, 0)?;
        let vars: Vec<_> = varmap.data().lock().map_err(|_| Error::config("varmap", "poisoned"))?.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        let total: usize = vars.iter().map(|(_, v)| v.elem_count()).sum();
        let embed = enc.vocab_size() * size.hidden_size;
        let llm_p = size.num_parameters(enc.vocab_size()) - embed;
        let side_p = total - size.num_parameters(enc.vocab_size());
        let mut opt = AdamW::new(vars, 0.0)?;
        let mut step = || -> Result<()> {
            let loss = model.loss(&batch, &feats)?;
            let mut grads = loss.backward()?;
            clip_grad_norm(&mut grads, opt.vars(), 1.0)?;
            opt.step(&grads, 1e-4)
        };
        step()?;
        let t0 = Instant::now();
        for _ in 0..steps {
            step()?;
        }
        let step_s = t0.elapsed().as_secs_f64() / steps as f64;
        let tokens_llm = (lt + visual_tokens) * batch_size;
        let flops = 6.0 * (llm_p as f64 * tokens_llm as f64 + side_p as f64 * (grid * grid * batch_size) as f64);
        rows.push(BenchRow {
            llm: name.to_string(),
            llm_parameters: size.num_parameters(enc.vocab_size()),
            compressor: compressor.to_string(),
            visual_tokens,
            batch_size,
            step_s,
            samples_per_s: batch_size as f64 / step_s,
            gflops: flops / step_s / 1e9,
        });
    }
    Ok(rows)
}

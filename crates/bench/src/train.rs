//! Training throughput (`vlmscale bench train`): seconds per optimiser step, samples/s and achieved
//! GFLOP/s of the VLM training step for each LLM size preset, on one fixed synthetic batch, and the
//! export of that exact case (weights + batch) for the PyTorch peer
//! (`peers/torch_train_peer.py`), which times the identical model.
//!
//! One step is what [`train::vlm_train`] does per batch: query embedding (no gradient), compressor,
//! projector, the LLaVA splice, the decoder in [`models::Mode::Differentiable`], answer-token
//! cross-entropy, `backward`, global-norm clipping at 1.0 and AdamW. The frozen tower is not part of
//! the step (its features are precomputed, [`train::features`]); here they are seeded N(0, 1) values.
//!
//! FLOPs ([`StepFlops`]): the forward pass's matrix-product FLOPs from the cost model
//! (`scaling::cost::exact`: compressor, projector, the LLM with the attention score and context
//! products over the full L×L matrix, the LM head on the loss positions), times 3 for forward + backward (the backward pass computes two products per forward product, dX and
//! dW), plus the query embedding's forward once (it has no backward). Element-wise work (norms,
//! softmax, activations, the optimiser) is not counted, so the GFLOP/s figure is conservative.
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use synth::{DatasetConfig, Generator};

use models::vision::VisionFeatures;
use scaling::cost::arch::{LlmArch, ProjectorKind};
use scaling::cost::exact::{compressor, llm_forward_full, projector};
use train::batch::{collate, Batch, ConversationEncoder};
use train::checkpoint_io::{config_json, save_checkpoint};
use train::model::{CompressorKind, TrainableVlm, VlmArch};
use train::optim::{clip_grad_norm, AdamW};
use train::sizes::LlmSize;
use train::{Error, Result};

/// Learning rate of the timed steps (any value: the cost of a step does not depend on it).
pub const BENCH_LR: f64 = 1e-4;
/// Global gradient-norm clip of the timed steps (as training, [`train::vlm_train`]).
pub const BENCH_MAX_GRAD_NORM: f64 = 1.0;
/// Name of the batch file [`BenchCase::export`] writes next to the checkpoint.
pub const BATCH_FILE: &str = "batch.safetensors";

/// What to benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchConfig {
    /// Compressor (CLI name).
    pub compressor: String,
    /// V.
    pub visual_tokens: usize,
    /// B, questions per step.
    pub batch_size: usize,
    /// Tower width d of the (synthetic) features (64: the pretrained tower, [`train::vision_pretrain`]).
    pub vision_dim: usize,
    /// Patch grid side G (8).
    pub grid: usize,
    /// Seed of the features and of the weight initialisation.
    pub seed: u64,
    /// Data-parallel worker threads per step ([`TrainableVlm::loss_and_grads`]).
    pub threads: usize,
}

impl Default for BenchConfig {
    /// QueCC, V = 16, B = 32, the pretrained tower's d = 64 and 8×8 grid, seed 0, one thread.
    fn default() -> Self {
        Self {
            compressor: "quecc".into(),
            visual_tokens: 16,
            batch_size: 32,
            vision_dim: 64,
            grid: 8,
            seed: 0,
            threads: 1,
        }
    }
}

/// The fixed batch every case trains on: B generated questions (one per image, families in turn),
/// tokenised with the generated-text tokenizer, and seeded random tower features.
#[derive(Debug, Clone)]
pub struct BenchInput {
    /// The settings.
    pub config: BenchConfig,
    /// The compressor.
    pub kind: CompressorKind,
    /// The collated batch (V visual tokens per row).
    pub batch: Batch,
    /// Features in batch order: single (B, G², d), multi (B, G², 4d).
    pub features: VisionFeatures,
    /// The tokenizer (`tokenizer.json` bytes).
    pub tokenizer_json: Vec<u8>,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Id of `<|im_end|>`.
    pub im_end: u32,
}

/// `n` seeded N(0, 1) values (Box–Muller on ChaCha8).
fn normal(n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let u1: f64 = rng.random::<f64>().max(1e-300);
            let u2: f64 = rng.random::<f64>();
            ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
        })
        .collect()
}

impl BenchInput {
    /// Builds the batch. Errors: `batch_size == 0`, unknown compressor, V not producible from the
    /// grid, tokenizer or generator failures.
    pub fn new(config: &BenchConfig) -> Result<Self> {
        if config.batch_size == 0 {
            return Err(Error::config("batch_size", "must be > 0"));
        }
        let kind = train::model::trainable_compressor(&config.compressor)?;
        train::model::compressor_spec(kind, config.visual_tokens, config.grid, config.vision_dim, 8)?;
        let dev = Device::Cpu;
        let tokenizer_json = synth::build_tokenizer(&[])?
            .to_string(false)
            .map_err(|e| Error::config("tokenizer", e.to_string()))?
            .into_bytes();
        let dir = std::env::temp_dir().join(format!("vlmscale-bench-tok-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let tok = dir.join("tokenizer.json");
        std::fs::write(&tok, &tokenizer_json).map_err(|e| Error::io(&tok, e))?;
        let enc = ConversationEncoder::new(&tok);
        let _ = std::fs::remove_dir_all(&dir);
        let enc = enc?;
        let samples = Generator::new(DatasetConfig::default())?.generate(0..config.batch_size as u64)?;
        let examples = samples
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let qa = &s.qas[i % s.qas.len()];
                enc.example(i, &qa.question, &qa.answer, qa.family)
            })
            .collect::<Result<Vec<_>>>()?;
        let batch = collate(&examples.iter().collect::<Vec<_>>(), config.visual_tokens, &dev)?;
        let (b, g2, d) = (config.batch_size, config.grid * config.grid, config.vision_dim);
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed ^ 0xfea7_0000);
        let single = Tensor::from_vec(normal(b * g2 * d, &mut rng), (b, g2, d), &dev)?;
        let multi = Tensor::from_vec(normal(b * g2 * 4 * d, &mut rng), (b, g2, 4 * d), &dev)?;
        Ok(Self {
            config: config.clone(),
            kind,
            batch,
            features: VisionFeatures { single, multi: Some(multi), grid: config.grid },
            tokenizer_json,
            vocab_size: enc.vocab_size(),
            im_end: enc.im_end(),
        })
    }

    /// Lt, the padded text length.
    pub fn text_len(&self) -> usize {
        self.batch.text_ids.dim(1).unwrap_or(0)
    }
}

/// Matrix-product FLOPs of one training step (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StepFlops {
    /// Forward FLOPs of the differentiated part (compressor, projector, LLM on the spliced input, LM head).
    pub forward: f64,
    /// Forward FLOPs of the query embedding (QueCC only; no backward).
    pub query_forward: f64,
}

impl StepFlops {
    /// 3 · forward + query forward.
    pub fn step(&self) -> f64 {
        3.0 * self.forward + self.query_forward
    }
}

/// The cost model's description of LLM size `size` with vocabulary `vocab`.
fn llm_arch(size: &LlmSize, vocab: usize) -> LlmArch {
    LlmArch {
        hidden_size: size.hidden_size,
        num_hidden_layers: size.num_hidden_layers,
        num_attention_heads: size.num_attention_heads,
        num_key_value_heads: Some(size.num_key_value_heads),
        intermediate_size: size.intermediate_size,
        vocab_size: vocab,
        tie_word_embeddings: false,
        max_position_embeddings: None,
    }
}

/// Forward matrix-product FLOPs (`scaling::cost::exact`) of the LLM on B sequences of length L, over
/// the full L×L score matrix as training computes it, without the LM head.
fn decoder_flops(arch: &LlmArch, b: usize, l: usize) -> f64 {
    let (mm, att) = llm_forward_full(arch, l as f64);
    b as f64 * (mm + att)
}

/// One LLM size with its model, seeded weights and optimiser, ready to step on a [`BenchInput`].
pub struct BenchCase {
    /// The size preset.
    pub size: LlmSize,
    /// The VLM's shapes.
    pub arch: VlmArch,
    /// All trainable weights (checkpoint names).
    pub varmap: VarMap,
    /// The model (differentiable mode).
    pub model: TrainableVlm,
    /// AdamW (weight decay 0, as LLaVA).
    pub optimizer: AdamW,
}

impl BenchCase {
    /// Builds size `llm` for `input` with HF-style seeded initial weights ([`train::init::reinit`],
    /// seed `input.config.seed`). Errors: unknown size, model construction.
    pub fn new(input: &BenchInput, llm: &str) -> Result<Self> {
        Self::with_dtype(input, llm, DType::F32)
    }

    /// As [`Self::new`] in `dtype` (f64 for parity checks).
    pub fn with_dtype(input: &BenchInput, llm: &str, dtype: DType) -> Result<Self> {
        let size = LlmSize::from_name(llm)?;
        let c = &input.config;
        let arch = VlmArch {
            llm: size.decoder_config(input.vocab_size, input.im_end)?,
            compressor: input.kind,
            visual_tokens: c.visual_tokens,
            vision_dim: c.vision_dim,
            grid: c.grid,
        };
        let varmap = VarMap::new();
        let model = TrainableVlm::new(&arch, true, VarBuilder::from_varmap(&varmap, dtype, &Device::Cpu))?;
        train::init::reinit(&varmap, c.seed)?;
        let vars = varmap
            .data()
            .lock()
            .map_err(|_| Error::config("varmap", "poisoned lock"))?
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let optimizer = AdamW::new(vars, 0.0)?;
        Ok(Self { size, arch, varmap, model, optimizer })
    }

    /// Trainable parameters (LLM + compressor + projector).
    pub fn trainable_parameters(&self) -> usize {
        self.optimizer.vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// One optimiser step on `input` (forward, backward — data-parallel on `input.config.threads`
    /// threads —, clip at 1.0, AdamW at `lr`); returns the loss before the step and the gradient norm
    /// before clipping. Errors: tensor ops.
    pub fn step(&mut self, input: &BenchInput, lr: f64) -> Result<(f64, f64)> {
        let (value, mut grads) =
            self.model.loss_and_grads(&input.batch, &input.features, self.optimizer.vars(), input.config.threads)?;
        let norm = clip_grad_norm(&mut grads, self.optimizer.vars(), BENCH_MAX_GRAD_NORM)?;
        self.optimizer.step(&grads, lr)?;
        Ok((value, norm))
    }

    /// Matrix-product FLOPs of one step on `input` (see the module docs).
    pub fn flops(&self, input: &BenchInput) -> StepFlops {
        let b = input.config.batch_size;
        let (v, lt) = (input.config.visual_tokens, input.text_len());
        let n = input.batch.targets.dim(0).unwrap_or(0) as f64;
        let lq = input.batch.query_ids.dim(1).unwrap_or(0);
        let h = self.size.hidden_size as f64;
        let arch = llm_arch(&self.size, input.vocab_size);
        let lm_head = 2.0 * n * h * input.vocab_size as f64;
        let (g2, d) = ((input.config.grid * input.config.grid) as f64, input.config.vision_dim as f64);
        let vision_side =
            compressor(input.kind, g2, d, v as f64, h) + projector(ProjectorKind::MLP2X_GELU, v as f64, d, h);
        let forward = b as f64 * vision_side + decoder_flops(&arch, b, lt + v) + lm_head;
        let query_forward = if input.kind.uses_query() { decoder_flops(&arch, b, lq) } else { 0.0 };
        StepFlops { forward, query_forward }
    }

    /// Writes this case for the PyTorch peer into `dir` (created/replaced atomically): a LLaVA-layout
    /// checkpoint (`config.json` as training writes it, `model.safetensors` with the current weights,
    /// `tokenizer.json`) and [`BATCH_FILE`] with `single` (B, G², d) and `multi` (B, G², 4d) f32
    /// features, and u32 `text_ids` (B, Lt), `splice_index` (B·(Lt + V)), `loss_positions` (n),
    /// `targets` (n), `query_ids` (B, Lq), `query_last` (B). Errors: I/O.
    pub fn export(&self, input: &BenchInput, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let llm = self.size.hf_config(input.vocab_size, input.im_end);
        let mut config = config_json(&self.arch, &llm, dir, &[1, 2, 3, 4])?;
        // No real tower behind the synthetic features.
        config["mm_vision_tower"] = serde_json::Value::String("none".into());
        save_checkpoint(dir, &config, &self.varmap, &input.tokenizer_json, None)?;
        let b = &input.batch;
        let last: Vec<u32> = b.query_lens.iter().map(|&n| n.saturating_sub(1) as u32).collect();
        let f = &input.features;
        let multi = f.multi.clone().ok_or_else(|| Error::config("features", "multi-level features missing"))?;
        let tensors: std::collections::HashMap<String, Tensor> = [
            ("single", f.single.to_dtype(DType::F32)?),
            ("multi", multi.to_dtype(DType::F32)?),
            ("text_ids", b.text_ids.clone()),
            ("splice_index", b.splice_index.clone()),
            ("loss_positions", b.loss_positions.clone()),
            ("targets", b.targets.clone()),
            ("query_ids", b.query_ids.clone()),
            ("query_last", Tensor::from_vec(last, b.len(), &Device::Cpu)?),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        candle_core::safetensors::save(&tensors, dir.join(BATCH_FILE))?;
        Ok(())
    }
}

/// Loads a case written by [`BenchCase::export`] (its weights, not re-seeded) in `dtype` (f64 for
/// parity checks against the PyTorch peer's `check` mode), with its batch and features.
/// Errors: missing/corrupt files ([`Error::Checkpoint`] naming the file or tensor), an LLM that is
/// not one of the presets, shapes that do not fit the architecture.
pub fn load_exported(dir: &Path, dtype: DType) -> Result<(BenchCase, BenchInput)> {
    let dev = Device::Cpu;
    let saved = train::checkpoint_io::read_saved_vlm(dir)?;
    let arch = saved.arch;
    let l = &arch.llm;
    let size = train::sizes::SIZES
        .iter()
        .copied()
        .find(|s| {
            (s.hidden_size, s.intermediate_size, s.num_hidden_layers, s.num_attention_heads, s.num_key_value_heads)
                == (
                    l.hidden_size,
                    l.intermediate_size,
                    l.num_hidden_layers,
                    l.num_attention_heads,
                    l.num_key_value_heads,
                )
        })
        .ok_or_else(|| Error::Checkpoint {
            path: dir.join("config.json"),
            msg: "the LLM is not one of the size presets".into(),
        })?;
    let im_end = *l
        .eos_token_ids
        .first()
        .ok_or_else(|| Error::Checkpoint { path: dir.join("config.json"), msg: "no eos_token_id".into() })?;
    let load = |name: &str| -> Result<std::collections::HashMap<String, Tensor>> {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
        candle_core::safetensors::load_buffer(&bytes, &dev)
            .map_err(|e| Error::Checkpoint { path: path.clone(), msg: format!("not a valid safetensors file: {e}") })
    };
    let weights = load(engine::checkpoint::WEIGHTS_FILE)?;
    let varmap = VarMap::new();
    let model = TrainableVlm::new(&arch, true, VarBuilder::from_varmap(&varmap, dtype, &dev))?;
    let vars: Vec<(String, candle_core::Var)> = varmap
        .data()
        .lock()
        .map_err(|_| Error::config("varmap", "poisoned lock"))?
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let wpath = dir.join(engine::checkpoint::WEIGHTS_FILE);
    for (name, var) in &vars {
        let t = weights
            .get(name)
            .ok_or_else(|| Error::Checkpoint { path: wpath.clone(), msg: format!("missing tensor `{name}`") })?;
        if t.dims() != var.dims() {
            return Err(Error::Checkpoint {
                path: wpath.clone(),
                msg: format!("`{name}` has shape {:?}, the model {:?}", t.dims(), var.dims()),
            });
        }
        var.set(&t.to_dtype(dtype)?)?;
    }
    if weights.len() != vars.len() {
        return Err(Error::Checkpoint {
            path: wpath,
            msg: format!("{} tensors for {} model weights", weights.len(), vars.len()),
        });
    }
    let optimizer = AdamW::new(vars, 0.0)?;

    let bpath = dir.join(BATCH_FILE);
    let t = load(BATCH_FILE)?;
    let get = |k: &str| {
        t.get(k).cloned().ok_or_else(|| Error::Checkpoint { path: bpath.clone(), msg: format!("missing tensor `{k}`") })
    };
    let (text_ids, splice_index, query_last) = (get("text_ids")?, get("splice_index")?, get("query_last")?);
    let (b, lt) = text_ids.dims2()?;
    let v = arch.visual_tokens;
    let splice: Vec<u32> = splice_index.to_vec1()?;
    if splice.len() != b * (lt + v) {
        return Err(Error::Checkpoint {
            path: bpath,
            msg: format!("splice_index has {} entries for ({b}, {lt} + {v})", splice.len()),
        });
    }
    let prefix_lens =
        splice.chunks(lt + v).map(|row| row.iter().take_while(|&&i| (i as usize) < b * lt).count()).collect();
    let query_lens = query_last.to_vec1::<u32>()?.into_iter().map(|i| i as usize + 1).collect();
    let batch = Batch {
        image_index: Tensor::arange(0u32, b as u32, &dev)?,
        text_ids,
        prefix_lens,
        splice_index,
        loss_positions: get("loss_positions")?,
        targets: get("targets")?,
        query_ids: get("query_ids")?,
        query_lens,
        visual_tokens: v,
    };
    let features = VisionFeatures {
        single: get("single")?.to_dtype(dtype)?,
        multi: Some(get("multi")?.to_dtype(dtype)?),
        grid: arch.grid,
    };
    let tpath = dir.join("tokenizer.json");
    let input = BenchInput {
        config: BenchConfig {
            compressor: arch.compressor.name().to_string(),
            visual_tokens: v,
            batch_size: b,
            vision_dim: arch.vision_dim,
            grid: arch.grid,
            seed: 0,
            threads: 1,
        },
        kind: arch.compressor,
        batch,
        features,
        tokenizer_json: std::fs::read(&tpath).map_err(|e| Error::io(&tpath, e))?,
        vocab_size: l.vocab_size,
        im_end,
    };
    Ok((BenchCase { size, arch, varmap, model, optimizer }, input))
}

/// One row of the benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// Preset name.
    pub llm: String,
    /// N (LLM parameters).
    pub llm_parameters: usize,
    /// All trainable parameters (LLM + compressor + projector).
    pub trainable_parameters: usize,
    /// Compressor.
    pub compressor: String,
    /// V.
    pub visual_tokens: usize,
    /// Batch size.
    pub batch_size: usize,
    /// Loss of the first (warm-up) step, nats per answer token.
    pub step0_loss: f64,
    /// Mean seconds per optimiser step (after one warm-up step).
    pub step_s: f64,
    /// Questions per second.
    pub samples_per_s: f64,
    /// Matrix-product FLOPs per step (see [`StepFlops`]).
    pub flops_per_step: f64,
    /// Achieved GFLOP/s.
    pub gflops: f64,
}

impl BenchRow {
    /// The row of `case` timed at `step_s` seconds per step.
    pub fn new(case: &BenchCase, input: &BenchInput, step0_loss: f64, step_s: f64) -> Self {
        let flops = case.flops(input).step();
        let c = &input.config;
        Self {
            llm: case.size.name.to_string(),
            llm_parameters: case.size.num_parameters(input.vocab_size),
            trainable_parameters: case.trainable_parameters(),
            compressor: c.compressor.clone(),
            visual_tokens: c.visual_tokens,
            batch_size: c.batch_size,
            step0_loss,
            step_s,
            samples_per_s: c.batch_size as f64 / step_s,
            flops_per_step: flops,
            gflops: flops / step_s / 1e9,
        }
    }
}

/// Times `steps` training steps (after one warm-up step) for each preset in `sizes`; `progress(size,
/// done, total)` is called after every step. With `export_dir`, each case is first exported
/// ([`BenchCase::export`], initial weights) to `export_dir/{size}` for the PyTorch peer.
/// Errors: unknown size or compressor, V not producible, `steps == 0` or `batch_size == 0`, I/O.
pub fn bench_train(
    config: &BenchConfig,
    sizes: &[&str],
    steps: usize,
    export_dir: Option<&Path>,
    progress: &mut dyn FnMut(&str, usize, usize),
) -> Result<Vec<BenchRow>> {
    if steps == 0 {
        return Err(Error::config("steps", "must be > 0"));
    }
    let input = BenchInput::new(config)?;
    let mut rows = vec![];
    for name in sizes {
        let mut case = BenchCase::new(&input, name)?;
        if let Some(dir) = export_dir {
            case.export(&input, &dir.join(name))?;
        }
        let (loss0, _) = case.step(&input, BENCH_LR)?;
        progress(name, 1, steps + 1);
        let t0 = std::time::Instant::now();
        for i in 0..steps {
            case.step(&input, BENCH_LR)?;
            progress(name, i + 2, steps + 1);
        }
        rows.push(BenchRow::new(&case, &input, loss0, t0.elapsed().as_secs_f64() / steps as f64));
    }
    Ok(rows)
}

//! `vlmscale bench infer`: one VLM query at real sizes with weights created in memory — CLIP
//! ViT-L/14-336 (23 of 24 blocks, LLaVA's select layer −2, plus the multi-level features), QueCC at V
//! (no compressor at V = 576, as LLaVA-1.5), the `mlp2x_gelu` projector and a Qwen-1.5 LLM shape — timing
//! each stage: vision, QueCC's query embedding (the LLM on the Q question tokens), compressor, projector,
//! prefill of Q + V tokens, time to first token, and decode ms/token after the prefill. A benchmark,
//! not a test: nothing asserts on time, and on a shared, loaded machine the numbers are noisy.
//!
//! Weights: one [`VarMap`] per part under HF names (the LLM's `model.*`), created on first use with
//! candle's init hints (Kaiming / normal for `candle_nn` layers, zeros for tensors fetched without a
//! hint). Dense f32 matmul time does not depend on the values. Another implementation can run on the
//! very same LLM weights through [`InferBench::llm_var_builder`] (the CLI times candle-transformers'
//! own Qwen2 that way).
use std::time::Instant;

use candle_core::{CpuStorage, DType, Device, Shape, Storage, Tensor, WithDType};
use candle_nn::init::NormalOrUniform;
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder, VarMap};
use scaling::cost::arch::LlmArch;
use scaling::cost::exact::llm_forward;
use scaling::cost::latency::LatencyProfile;

use crate::vision::VisionBench;
use engine::model::{WeightFormat, WeightParts};
use engine::{Error, Result};
use models::compress::{Compressor, CompressorSpec};
use models::decoder::{Decoder, DecoderConfig};
use models::projector::{Projector, ProjectorKind, ProjectorLayout};
use models::vision::{extract_features, ClipVisionTower, FeatureLayers};
use models::Mode;

/// The paper's visual-token counts.
pub const PAPER_VISUAL_TOKENS: [usize; 7] = [1, 4, 16, 36, 64, 144, 576];

/// The `config.json` of a Qwen-1.5 shape: `0.5b` (Qwen/Qwen1.5-0.5B) or `1.8b` (Qwen/Qwen1.5-1.8B).
/// Errors: [`Error::Invalid`] for another name.
pub fn qwen15_config(size: &str) -> Result<DecoderConfig> {
    DecoderConfig::from_json_str(&qwen15_config_json(size)?.to_string())
}

/// The HF `config.json` of [`qwen15_config`] as JSON (what a peer reads beside the exported weights).
/// Errors: [`Error::Invalid`] for another name.
pub fn qwen15_config_json(size: &str) -> Result<serde_json::Value> {
    let (h, i, l, heads) = match size {
        "0.5b" => (1024, 2816, 24, 16),
        "1.8b" => (2048, 5504, 24, 16),
        other => return Err(Error::Invalid(format!("unknown LLM size `{other}` (0.5b or 1.8b)"))),
    };
    Ok(serde_json::json!({
        "model_type": "qwen2", "vocab_size": 151936, "hidden_size": h, "intermediate_size": i,
        "num_hidden_layers": l, "num_attention_heads": heads, "num_key_value_heads": heads,
        "max_position_embeddings": 32768, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
        "tie_word_embeddings": size == "0.5b", "hidden_act": "silu", "use_sliding_window": false,
    }))
}

/// The LLM shapes `bench infer` builds: the names [`llm_config`] takes.
pub const LLM_SHAPES: [&str; 3] = ["0.5b", "1.8b", "vicuna-7b"];

/// The HF `config.json` of an LLM shape of [`LLM_SHAPES`]: `0.5b` / `1.8b` ([`qwen15_config_json`]) or
/// `vicuna-7b`: lmsys/vicuna-7b-v1.5's `config.json` (Llama, H = 4096, 32 layers, 32 heads, MLP
/// 11008, vocabulary 32000: the LLM of LLaVA-1.5-7B), as the checkpoint ships it.
/// Errors: [`Error::Invalid`] for another name.
pub fn llm_config_json(shape: &str) -> Result<serde_json::Value> {
    match shape {
        "vicuna-7b" => Ok(serde_json::json!({
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "bos_token_id": 1, "eos_token_id": 2,
            "pad_token_id": 0, "hidden_act": "silu", "hidden_size": 4096, "initializer_range": 0.02,
            "intermediate_size": 11008, "max_position_embeddings": 4096, "num_attention_heads": 32,
            "num_hidden_layers": 32, "num_key_value_heads": 32, "pretraining_tp": 1, "rms_norm_eps": 1e-5,
            "rope_scaling": null, "tie_word_embeddings": false, "torch_dtype": "float16", "use_cache": true,
            "vocab_size": 32000,
        })),
        "0.5b" | "1.8b" => qwen15_config_json(shape),
        other => Err(Error::Invalid(format!("unknown LLM shape `{other}` (one of {})", LLM_SHAPES.join(", ")))),
    }
}

/// [`llm_config_json`] resolved as the decoder reads a `config.json`.
/// Errors: [`Error::Invalid`] for an unknown name.
pub fn llm_config(shape: &str) -> Result<DecoderConfig> {
    DecoderConfig::from_json_str(&llm_config_json(shape)?.to_string())
}

/// Seeded random weights made on request: a candle [`VarBuilder`] backend
/// ([`RandomWeights::var_builder`]) in place of a [`VarMap`], whose tensors are created at once in
/// their storage dtype.
///
/// Each tensor is drawn from a ChaCha8 generator seeded by the seed and the tensor's name (its values
/// do not depend on the order in which modules ask for tensors), following candle's init hint as a
/// [`VarMap`] would (Kaiming normal for `Linear` weights, N(0, 1) embeddings, ones for RMS norms,
/// uniform biases), drawn in f32. Matrices (rank-2 tensors: projections, embeddings, LM head) are
/// stored in the dtype given to [`RandomWeights::new`], each value rounded from f32 as it is drawn
/// into the tensor's storage, so that no f32 copy of the model ever exists: creating Vicuna-7B holds
/// its 13.5 GB of bf16 weights, not the 27 GB of f32. The other
/// tensors (norms, biases, convolutions) take the builder's dtype.
#[derive(Debug, Clone, Copy)]
pub struct RandomWeights {
    seed: u64,
    matrices: DType,
}

/// FNV-1a of `s` (stable across builds and platforms, unlike `std`'s hasher).
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3))
}

impl RandomWeights {
    /// Weights drawn from `seed`, matrices stored in `matrices` (f32, or bf16 for f32 activations
    /// with bf16 matrix weights as [`Decoder::convert_weights`] leaves them).
    pub fn new(seed: u64, matrices: DType) -> Self {
        Self { seed, matrices }
    }

    /// A builder (f32 for everything but the matrices) that creates each tensor it is asked for.
    pub fn var_builder(self, device: &Device) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self), DType::F32, device.clone())
    }

    /// The tensor `name` of `shape` following `init`, in `dtype` (or the matrix dtype for rank 2).
    fn create(&self, shape: &Shape, name: &str, init: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        use rand::{RngCore, SeedableRng};
        let dtype = if shape.rank() == 2 { self.matrices } else { dtype };
        let n = shape.elem_count();
        // (mean, std, uniform) of the values, after candle's `Init::var`.
        let (mean, scale, uniform) = match init {
            Init::Const(v) => return Tensor::full(v as f32, shape, dev)?.to_dtype(dtype),
            Init::Randn { mean, stdev } => (mean, stdev, false),
            Init::Uniform { lo, up } => ((lo + up) / 2.0, (up - lo) / 2.0, true),
            Init::Kaiming { dist, fan, non_linearity } => {
                let std = non_linearity.gain() / (fan.for_shape(shape) as f64).sqrt();
                match dist {
                    NormalOrUniform::Normal => (0.0, std, false),
                    NormalOrUniform::Uniform => (0.0, 3f64.sqrt() * std, true),
                }
            }
        };
        let (mean, scale) = (mean as f32, scale as f32);
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed ^ fnv1a(name));
        // A uniform value in (0, 1] from 24 random bits.
        let mut unit = move || ((rng.next_u32() >> 8) + 1) as f32 / (1u32 << 24) as f32;
        let mut spare = None;
        let mut draw = move || -> f32 {
            if uniform {
                return mean + scale * (2.0 * unit() - 1.0);
            }
            // Box–Muller: two standard normals from two uniforms.
            if let Some(z) = spare.take() {
                return mean + scale * z;
            }
            let (r, theta) = ((-2.0 * unit().ln()).sqrt(), std::f32::consts::TAU * unit());
            let (s, c) = theta.sin_cos();
            spare = Some(r * s);
            mean + scale * r * c
        };
        // The values go straight into a vector of the storage type (candle's type for `dtype`, reached
        // through an empty tensor's storage): one allocation per tensor, no f32 copy.
        let proto = Tensor::zeros(0, dtype, &Device::Cpu)?;
        let (storage, _) = proto.storage_and_layout();
        match &*storage {
            // Rounded to bf16 in f32 first (then `from_f64` is exact): the value candle's f32 → bf16
            // conversion gives.
            Storage::Cpu(CpuStorage::BF16(like)) => filled(like, n, move || round_to_bf16(draw()), shape, dev),
            Storage::Cpu(CpuStorage::F32(like)) => filled(like, n, draw, shape, dev),
            _ => filled::<f32>(&[], n, draw, shape, dev)?.to_dtype(dtype),
        }
    }
}

/// `x` rounded to the nearest bf16 (ties to even), as an f32: what `half::bf16::from_f32` keeps.
fn round_to_bf16(x: f32) -> f32 {
    let bits = x.to_bits();
    if x.is_nan() {
        return x;
    }
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) & 0xffff_0000;
    f32::from_bits(rounded)
}

/// A tensor of `shape` holding `n` values of `draw` stored as `T` (the type of `_like`).
fn filled<T: WithDType>(
    _like: &[T],
    n: usize,
    mut draw: impl FnMut() -> f32,
    shape: &Shape,
    dev: &Device,
) -> candle_core::Result<Tensor> {
    let values: Vec<T> = (0..n).map(|_| T::from_f64(draw() as f64)).collect();
    Tensor::from_vec(values, shape, dev)
}

impl SimpleBackend for RandomWeights {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        self.create(&s, name, h, dtype, dev)
    }

    fn get_unchecked(&self, name: &str, _: DType, _: &Device) -> candle_core::Result<Tensor> {
        candle_core::bail!("random weights need a shape: `{name}` was asked for without one")
    }

    fn contains_tensor(&self, _: &str) -> bool {
        true
    }
}

/// A decoder of shape `cfg` on seeded [`RandomWeights`] with its matrix weights in `matrices`: f32, or
/// bf16 created as bf16 (then [`Decoder::convert_weights`] only stacks q|k|v and gate|up), so that the
/// peak memory of building it stays near its bf16 size. Activations, norms and biases are f32; the
/// result is the decoder that building it in f32 from the same seed and converting to bf16 gives.
/// Errors: [`Decoder::new`]'s, [`Decoder::convert_weights`]'s (a dtype other than f32 or bf16).
pub fn random_decoder(cfg: &DecoderConfig, seed: u64, matrices: DType, device: &Device) -> Result<Decoder> {
    let mut decoder = Decoder::new(cfg, RandomWeights::new(seed, matrices).var_builder(device))?;
    if matrices != DType::F32 {
        decoder.convert_weights(matrices)?;
    }
    Ok(decoder)
}

/// The scaling crate's architecture description of an LLM config (for FLOPs).
pub fn llm_arch(cfg: &DecoderConfig) -> LlmArch {
    LlmArch {
        hidden_size: cfg.hidden_size,
        num_hidden_layers: cfg.num_hidden_layers,
        num_attention_heads: cfg.num_attention_heads,
        num_key_value_heads: Some(cfg.num_key_value_heads),
        intermediate_size: cfg.intermediate_size,
        vocab_size: cfg.vocab_size,
        tie_word_embeddings: cfg.tie_word_embeddings,
        max_position_embeddings: Some(cfg.max_position_embeddings),
    }
}

/// GFLOP of an LLM forward over `tokens` new tokens after `past` cached ones (matmuls + attention)
/// plus the LM head at one position.
pub fn llm_gflop(cfg: &DecoderConfig, tokens: usize, past: usize) -> f64 {
    let (mm, att) = llm_forward(&llm_arch(cfg), tokens as f64, past as f64);
    (mm + att + 2.0 * (cfg.hidden_size * cfg.vocab_size) as f64) / 1e9
}

/// One V's measurements, milliseconds.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct InferRow {
    /// V.
    pub visual_tokens: usize,
    /// Q.
    pub text_tokens: usize,
    /// Compressor used (`quecc` or `none`).
    pub compressor: String,
    /// Vision tower + feature selection.
    pub vision_ms: f64,
    /// QueCC's query embedding (0 without QueCC).
    pub query_embedding_ms: f64,
    /// Compressor.
    pub compressor_ms: f64,
    /// Projector.
    pub projector_ms: f64,
    /// Prefill of Q + V tokens (LM head on the last position included).
    pub prefill_ms: f64,
    /// Vision + query embedding + compressor + projector + prefill.
    pub ttft_ms: f64,
    /// Mean decode step after the prefill.
    pub decode_ms_per_token: f64,
    /// Achieved GFLOP/s of the prefill.
    pub prefill_gflops_per_s: f64,
    /// GFLOP of the LLM part of TTFT (query embedding + prefill).
    pub llm_gflop: f64,
}

impl std::fmt::Display for InferRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "V {:>4} ({:<6}) Q+V {:>4} | vision {:>7.1} | query-emb {:>7.1} | compressor {:>6.1} | projector {:>5.1} | prefill {:>8.1} | TTFT {:>8.1} | decode {:>6.1} ms/token | prefill {:>6.1} GFLOP/s",
            self.visual_tokens,
            self.compressor,
            self.text_tokens + self.visual_tokens,
            self.vision_ms,
            self.query_embedding_ms,
            self.compressor_ms,
            self.projector_ms,
            self.prefill_ms,
            self.ttft_ms,
            self.decode_ms_per_token,
            self.prefill_gflops_per_s
        )
    }
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

/// Best of `repeats` (≥ 1) timed runs of `f`, ms.
fn best_ms(repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        f()?;
        best = best.min(ms(t));
    }
    Ok(best)
}

/// One [`InferBench::run`]: the rows and the memory they ran in.
#[derive(Debug, Clone)]
pub struct InferRun {
    /// One row per V.
    pub rows: Vec<InferRow>,
    /// Storage of the LLM's matrix weights in this run (f32, or bf16 / q8_0 / q4_0 via
    /// [`Decoder::convert_weights`]); the vision tower, compressors and projector hold the same, or bf16
    /// when a quantised format does not apply to them (see [`InferBench::run`]).
    pub weight_format: WeightFormat,
    /// Bytes of the LLM's weights as stored ([`Decoder::weight_bytes`]).
    pub llm_weight_bytes: u64,
    /// Bytes of all weights held in memory during the run: vision tower, compressors, projector and
    /// LLM (matrices as stored, norms and biases f32).
    pub weight_bytes: u64,
    /// Peak resident set size of the process during the run (Linux `VmHWM`, reset at the start of the
    /// run through `/proc/self/clear_refs` after freed memory went back to the system,
    /// [`kernels::memory`]), bytes; `None` where unavailable.
    pub peak_rss_bytes: Option<u64>,
}

/// Bytes of a CLIP tower's weights with `depth` blocks whose matrices are in `format` (patch
/// embedding, position embeddings, norms and biases f32), as [`ClipVisionTower::convert_weights`]
/// leaves them.
pub fn tower_weight_bytes(cfg: &models::vision::ClipVisionConfig, depth: usize, format: WeightFormat) -> u64 {
    let (d, i) = (cfg.hidden_size, cfg.intermediate_size);
    let matrices = depth * (4 * d * d + 2 * d * i);
    let other = cfg.num_channels * cfg.patch_size * cfg.patch_size * d // patch embedding
        + (cfg.num_patches() + 2) * d // position embeddings + CLS
        + 2 * d // pre-layernorm
        + depth * (4 * d + i + d + 4 * d); // biases, two layernorms per block
    ((matrices as f64 * format.bytes_per_weight()).round() as usize + other * 4) as u64
}

/// The real-size VLM with in-memory weights.
pub struct InferBench {
    llm_cfg: DecoderConfig,
    llm_vars: VarMap,
    vision: VisionBench,
    device: Device,
}

impl InferBench {
    /// CLIP ViT-L/14-336 + an LLM of shape `llm_cfg` (e.g. [`qwen15_config`]), f32 on `device`.
    pub fn new(llm_cfg: DecoderConfig, device: &Device) -> Self {
        let vision = VisionBench::new(llm_cfg.hidden_size, device);
        Self { llm_cfg, llm_vars: VarMap::new(), vision, device: device.clone() }
    }

    /// The LLM's configuration.
    pub fn llm_config(&self) -> &DecoderConfig {
        &self.llm_cfg
    }

    /// The LLM weights (f32, HF names rooted at the top level: `model.*`).
    pub fn llm_var_builder(&self) -> VarBuilder<'static> {
        VarBuilder::from_varmap(&self.llm_vars, DType::F32, &self.device)
    }

    /// The LLM weights created so far as plain tensors (see
    /// [`crate::vision::VisionBench::frozen_var_builder`]): build a module once on
    /// [`Self::llm_var_builder`] to create them, then on this for timing.
    pub fn llm_frozen_var_builder(&self) -> VarBuilder<'static> {
        crate::vision::frozen(&self.llm_vars, &self.device)
    }

    /// Writes the LLM's f32 weights (created first if needed) under their HF names to the safetensors
    /// file `path`, for a peer to run on the same values (the llama.cpp peer converts them to GGUF).
    /// Errors: creating the weights, writing the file.
    pub fn export_llm(&self, path: &std::path::Path) -> Result<()> {
        self.decoder()?;
        Ok(self.llm_vars.save(path)?)
    }

    /// Our decoder on [`Self::llm_var_builder`] (weights created on first call).
    pub fn decoder(&self) -> Result<Decoder> {
        Decoder::new(&self.llm_cfg, self.llm_var_builder())
    }

    /// Times one query per V in `visual_tokens` with Q = `text_tokens` (the question alone is also Q
    /// tokens long for the query embedding), `decode_steps` decode steps after each prefill, best of
    /// `repeats`, with the matrix weights of the LLM and the vision tower in `weights` (f32, or
    /// bf16 / q8_0 / q4_0: then their f32 originals are dropped from this bench, so
    /// [`Self::llm_var_builder`] is empty afterwards — time peers on them first — and a later run
    /// creates new random weights). For q8_0/q4_0, the parts not in `parts` are bf16.
    /// `on_row` gets each row as soon as it is measured.
    /// Errors: V not producible from the 24×24 grid, Q + V + decode steps over the context window,
    /// an unsupported weight format.
    #[allow(clippy::too_many_arguments)] // the run's knobs, each named at the one call site
    pub fn run(
        &self,
        visual_tokens: &[usize],
        text_tokens: usize,
        decode_steps: usize,
        repeats: usize,
        weights: WeightFormat,
        parts: WeightParts,
        mut on_row: impl FnMut(&InferRow),
    ) -> Result<InferRun> {
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        let vcfg = self.vision.config().clone();
        let (g, d, h) = (vcfg.grid(), vcfg.hidden_size, self.llm_cfg.hidden_size);
        let layers = FeatureLayers::default();
        let depth = layers.depth(vcfg.num_hidden_layers)?;
        let projector_of = |vb: VarBuilder| {
            Projector::new(
                ProjectorKind::MlpGelu { depth: 2 },
                d,
                h,
                ProjectorLayout::Sequential,
                vb.pp("mm_projector_mlp2x_gelu"),
            )
        };
        let comps_of = |vb: &VarBuilder| {
            visual_tokens
                .iter()
                .map(|&v| {
                    let name = if v == g * g { "none" } else { "quecc" };
                    let spec = CompressorSpec::from_name(name, v, g, d, h)?;
                    let comp: Box<dyn Compressor> =
                        spec.build(g, d, Mode::Inference, vb.pp(format!("mm_projector_quecc_v{v}")))?;
                    Ok((v, name, comp))
                })
                .collect::<Result<Vec<_>>>()
        };
        // Every weight is created first (in the VarMaps), then the modules are built on detached
        // tensors (see `VisionBench::frozen_var_builder`), before the memory measurement starts.
        let vb = self.vision.var_builder();
        ClipVisionTower::new_with_depth(&vcfg, depth, Mode::Inference, vb.pp("vision_model"))?;
        projector_of(vb.clone())?;
        comps_of(&vb)?;
        self.decoder()?;
        let (mut tower, mut projector, mut comps, mut decoder) = {
            let fvb = self.vision.frozen_var_builder();
            let tower = ClipVisionTower::new_with_depth(&vcfg, depth, Mode::Inference, fvb.pp("vision_model"))?;
            let decoder = Decoder::new(&self.llm_cfg, crate::vision::frozen(&self.llm_vars, &self.device))?;
            (tower, projector_of(fvb.clone())?, comps_of(&fvb)?, decoder)
        };
        let mut converted_bytes = 0; // weights held converted (tower, compressors, projector)
        let dense = weights == WeightFormat::Dense(DType::F32);
        if !dense {
            let part = |on: bool| match weights {
                WeightFormat::Quant(_) if !on => WeightFormat::Dense(DType::BF16),
                w => w,
            };
            let (vision_f, comp_f, proj_f) = (part(parts.vision), part(parts.compressor), part(parts.projector));
            // The tower's and the LLM's matrices in `weights`; their f32 originals leave the bench's
            // stores (and memory).
            tower.convert_weights(vision_f)?;
            for (_, _, comp) in comps.iter_mut() {
                comp.convert_weights(comp_f)?;
            }
            projector.convert_weights(proj_f)?;
            // The converted compressors and projector replace their f32 originals too.
            converted_bytes += self.vision.converted_bytes("mm_projector_mlp2x_gelu", proj_f);
            converted_bytes += self.vision.converted_bytes("mm_projector_quecc", comp_f);
            self.vision.drop_weights("mm_projector");
            self.vision.drop_weights("vision_model.");
            converted_bytes += tower_weight_bytes(&vcfg, depth, vision_f);
            decoder.convert_weights(part(parts.llm))?;
            if let Ok(mut d) = self.llm_vars.data().lock() {
                d.clear();
            }
        }
        let pixels = self.vision.pixels()?;
        let q = text_tokens.max(1);
        // Freed temporaries of the random initialisation and of a conversion go back to the system
        // first: the peak then covers what serving needs (weights, activations, KV cache).
        kernels::memory::release_free_memory();
        let rss_reset = kernels::memory::reset_peak_rss();
        let question = Tensor::zeros((1, q), DType::U32, &self.device)?;
        // Warm-up (allocations, thread pool): one small prefill and one vision pass.
        decoder.query_embedding(&question, None)?;
        extract_features(&tower, &pixels, &layers)?;
        let vision_ms = best_ms(repeats, || extract_features(&tower, &pixels, &layers).map(|_| ()))?;
        let feats = extract_features(&tower, &pixels, &layers)?;
        let mut rows = vec![];
        for (v, name, comp) in comps {
            let mut query = None;
            let query_embedding_ms = if comp.needs_query() {
                best_ms(repeats, || {
                    query = Some(decoder.query_embedding(&question, None)?);
                    Ok(())
                })?
            } else {
                0.0
            };
            let mut compressed = None;
            let compressor_ms = best_ms(repeats, || {
                compressed = Some(comp.compress(&feats, query.as_ref())?);
                Ok(())
            })?;
            let compressed = compressed.ok_or_else(|| Error::Invalid("no compressor output".into()))?;
            let mut visual = None;
            let projector_ms = best_ms(repeats, || {
                visual = Some(projector.forward(&compressed)?);
                Ok(())
            })?;
            let visual = visual.ok_or_else(|| Error::Invalid("no projector output".into()))?;
            let text = kernels::random::randn(&mut rng, 0.02, (1, q, h), candle_core::DType::F32, &self.device)?;
            let embeds = Tensor::cat(&[&text, &visual], 1)?;
            let len = q + v;
            if len + decode_steps > self.llm_cfg.max_position_embeddings {
                return Err(Error::ContextWindow {
                    len: len + decode_steps,
                    max: self.llm_cfg.max_position_embeddings,
                });
            }
            let prefill_ms = best_ms(repeats, || {
                decoder.clear_kv_cache();
                let hs = decoder.forward_embeds(&embeds, 0)?;
                decoder.lm_head(&hs.narrow(1, len - 1, 1)?)?;
                Ok(())
            })?;
            let mut decode_total = 0.0;
            let step_ids = Tensor::zeros((1, 1), DType::U32, &self.device)?;
            for _ in 0..decode_steps {
                let t = Instant::now();
                let pos = decoder.kv_len();
                let hs = decoder.forward_embeds(&decoder.embed_tokens(&step_ids)?, pos)?;
                decoder.lm_head(&hs)?;
                decode_total += ms(t);
            }
            decoder.clear_kv_cache();
            let prefill_gflop = llm_gflop(&self.llm_cfg, len, 0);
            let query_gflop = if comp.needs_query() { llm_gflop(&self.llm_cfg, q, 0) } else { 0.0 };
            let row = InferRow {
                visual_tokens: v,
                text_tokens: q,
                compressor: name.to_string(),
                vision_ms,
                query_embedding_ms,
                compressor_ms,
                projector_ms,
                prefill_ms,
                ttft_ms: vision_ms + query_embedding_ms + compressor_ms + projector_ms + prefill_ms,
                decode_ms_per_token: if decode_steps > 0 { decode_total / decode_steps as f64 } else { 0.0 },
                prefill_gflops_per_s: prefill_gflop / (prefill_ms / 1e3),
                llm_gflop: prefill_gflop + query_gflop,
            };
            on_row(&row);
            rows.push(row);
        }
        let weight_bytes = crate::vision::varmap_bytes(&self.llm_vars)
            + self.vision.weight_bytes()
            + converted_bytes
            + if !dense { decoder.weight_bytes() as u64 } else { 0 };
        Ok(InferRun {
            rows,
            weight_format: decoder.weight_format(),
            llm_weight_bytes: decoder.weight_bytes() as u64,
            weight_bytes,
            peak_rss_bytes: if rss_reset { kernels::memory::peak_rss_bytes() } else { None },
        })
    }
}

/// A [`LatencyProfile`] from measured rows of an LLM with `n_params` parameters: vision ms (median),
/// compressor + projector ms (median over the QueCC rows), prefill ms per token per billion (least
/// squares through the origin of prefill ms against N_B·(Q + V)), decode ms per token per billion (mean).
/// Errors: [`Error::Invalid`] for no rows or `n_params` = 0.
pub fn latency_profile(rows: &[InferRow], n_params: usize, machine: &str) -> Result<LatencyProfile> {
    if rows.is_empty() || n_params == 0 {
        return Err(Error::Invalid("a latency profile needs measured rows and N > 0".into()));
    }
    let median = |mut v: Vec<f64>| {
        if v.is_empty() {
            return 0.0;
        }
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let nb = n_params as f64 / 1e9;
    let (sxy, sxx) = rows.iter().fold((0.0, 0.0), |(sxy, sxx), r| {
        let x = nb * (r.text_tokens + r.visual_tokens) as f64;
        (sxy + x * r.prefill_ms, sxx + x * x)
    });
    let quecc: Vec<&InferRow> = rows.iter().filter(|r| r.compressor == "quecc").collect();
    Ok(LatencyProfile {
        machine: machine.to_string(),
        vision_ms: median(rows.iter().map(|r| r.vision_ms).collect()),
        compressor_ms: median(quecc.iter().map(|r| r.compressor_ms + r.projector_ms).collect()),
        prefill_ms_per_token_per_billion: sxy / sxx,
        decode_ms_per_token_per_billion: rows.iter().map(|r| r.decode_ms_per_token).sum::<f64>()
            / rows.len() as f64
            / nb,
        quecc_query_pass: !quecc.is_empty(),
        formats: vec![],
    })
}

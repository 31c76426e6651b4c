//! `vlmscale bench vision`: times one 336×336 image through CLIP ViT-L/14-336 (random weights built in
//! memory) and each compressor, reporting achieved GFLOP/s. A benchmark, not a test: nothing here asserts
//! on time.
//!
//! The weights live in one [`VarMap`] under the HF names (`vision_model.*`, `mm_projector.*`), so another
//! implementation can be timed on the very same weights through [`VisionBench::var_builder`] — e.g.
//! candle-transformers' `ClipVisionTransformer::new(bench.var_builder().pp("vision_model"), &cfg)`
//! (see `examples/bench_vision.rs`; it needs `post_layernorm`, which the VarMap creates on demand) timed
//! with [`time_it`].
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use engine::Result;
use models::compress::{Compressor, CompressorSpec};
use models::vision::{extract_features, ClipVisionConfig, ClipVisionTower, FeatureLayers};
use models::Mode;
use std::time::Instant;

/// One timed item.
#[derive(Debug, Clone)]
pub struct BenchRow {
    /// What was timed.
    pub name: String,
    /// Fastest run, seconds.
    pub best_seconds: f64,
    /// Mean over the timed runs, seconds.
    pub mean_seconds: f64,
    /// Floating-point operations of one run (multiply-add = 2), in GFLOP.
    pub gflop: f64,
}

impl BenchRow {
    /// Achieved GFLOP/s on the fastest run.
    pub fn gflops_per_second(&self) -> f64 {
        self.gflop / self.best_seconds
    }
}

impl std::fmt::Display for BenchRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<44} best {:>8.3} s  mean {:>8.3} s  {:>8.2} GFLOP  {:>7.1} GFLOP/s",
            self.name,
            self.best_seconds,
            self.mean_seconds,
            self.gflop,
            self.gflops_per_second()
        )
    }
}

/// Runs `f` once to warm up, then `repeats` times (at least 1), and reports the timings.
/// Errors: whatever `f` returns.
pub fn time_it(name: &str, gflop: f64, repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<BenchRow> {
    f()?;
    let mut times = Vec::new();
    for _ in 0..repeats.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    Ok(BenchRow {
        name: name.to_string(),
        best_seconds: times.iter().cloned().fold(f64::INFINITY, f64::min),
        mean_seconds: times.iter().sum::<f64>() / times.len() as f64,
        gflop,
    })
}

/// FLOPs (GFLOP) of the CLIP tower up to block `depth` for one image (`scaling::cost::exact::vision_tower`).
pub fn tower_gflop(cfg: &ClipVisionConfig, depth: usize) -> f64 {
    let arch = scaling::cost::arch::VisionArch {
        hidden_size: cfg.hidden_size,
        intermediate_size: cfg.intermediate_size,
        num_hidden_layers: cfg.num_hidden_layers,
        image_size: cfg.image_size,
        patch_size: cfg.patch_size,
        layers_run: depth,
        num_attention_heads: cfg.num_attention_heads,
    };
    scaling::cost::exact::vision_tower(&arch) / 1e9
}

/// FLOPs (GFLOP) of a compressor for one image (matmuls only): N = grid² tokens, width d, V outputs,
/// H = LLM width.
pub fn compressor_gflop(spec: &CompressorSpec, n: usize, d: usize, llm_hidden: usize) -> f64 {
    let (n, d, h) = (n as f64, d as f64, llm_hidden as f64);
    let kv = 2.0 * (2.0 * n * 4.0 * d * d + 2.0 * n * d * d); // k/v MLPs on 4d-wide features
    let attn = |v: f64| 2.0 * v * d * d * 2.0 + 2.0 * 2.0 * n * d * d + 4.0 * n * d; // q/out, k/v in-proj, scores
    (match spec {
        CompressorSpec::None => 0.0,
        CompressorSpec::AvgPool { .. } => n * d, // one add per input element
        CompressorSpec::Quecc(c) => {
            let v = c.out_grid().map(|g| (g * g) as f64).unwrap_or(0.0);
            let k2 = (c.kernel * c.kernel) as f64;
            2.0 * h * d + 4.0 * n * d * d + 2.0 * v * k2 * d + kv + attn(v)
        }
        CompressorSpec::TokenPacker(c) => {
            let v = c.visual_tokens as f64;
            2.0 * v * d * d + 2.0 * v * n * d + kv + attn(v)
        }
    }) / 1e9
}

/// A builder over detached copies (shared storage) of the tensors in `vars`; see
/// [`VisionBench::frozen_var_builder`].
pub fn frozen(vars: &VarMap, device: &Device) -> VarBuilder<'static> {
    let map = vars
        .data()
        .lock()
        .map(|d| d.iter().map(|(k, v)| (k.clone(), v.as_tensor().detach())).collect())
        .unwrap_or_default();
    VarBuilder::from_tensors(map, DType::F32, device)
}

/// Bytes of the tensors in `vars`.
pub(crate) fn varmap_bytes(vars: &VarMap) -> u64 {
    vars.data()
        .lock()
        .map(|d| d.values().map(|v| (v.elem_count() * v.dtype().size_in_bytes()) as u64).sum())
        .unwrap_or(0)
}

/// CLIP ViT-L/14-336 with random weights, plus every compressor, in one [`VarMap`].
pub struct VisionBench {
    varmap: VarMap,
    device: Device,
    cfg: ClipVisionConfig,
    llm_hidden: usize,
}

impl VisionBench {
    /// An empty weight store for ViT-L/14-336 and an LLM of width `llm_hidden` (QueCC's query width;
    /// 4096 for Vicuna-7B). Weights are created (randomly, candle's default inits) on first use.
    pub fn new(llm_hidden: usize, device: &Device) -> Self {
        Self {
            varmap: VarMap::new(),
            device: device.clone(),
            cfg: ClipVisionConfig::clip_vit_large_patch14_336(),
            llm_hidden,
        }
    }

    /// The shared weights (f32); `pp("vision_model")` for a CLIP tower.
    pub fn var_builder(&self) -> VarBuilder<'static> {
        VarBuilder::from_varmap(&self.varmap, DType::F32, &self.device)
    }

    /// The weights created so far as plain tensors (detached from the `VarMap`'s variables, same
    /// storage). Modules built on these do not record candle's autograd graph: built on the variables
    /// themselves, every activation would keep its inputs alive until the output is dropped (a whole
    /// forward pass resident at once). Build once on [`Self::var_builder`] to create the weights, then
    /// again on this for timing.
    pub fn frozen_var_builder(&self) -> VarBuilder<'static> {
        frozen(&self.varmap, &self.device)
    }

    /// Removes the weights whose names start with `prefix` from the store (e.g. `vision_model.` once a
    /// converted copy of the tower is in use); they are created afresh if asked for again.
    pub fn drop_weights(&self, prefix: &str) {
        if let Ok(mut d) = self.varmap.data().lock() {
            d.retain(|name, _| !name.starts_with(prefix));
        }
    }

    /// Bytes that the weights under `prefix` occupy once their matrices (rank-2 tensors: every
    /// `Linear` and attention projection) are stored in `format` (a dtype, or q8_0/q4_0 blocks) and the rest (norms, biases, convs)
    /// stays f32 — what [`models::compress::Compressor::convert_weights`] and
    /// [`models::projector::Projector::convert_weights`] keep in memory.
    pub fn converted_bytes(&self, prefix: &str, format: impl Into<engine::model::WeightFormat>) -> u64 {
        let per_weight = format.into().bytes_per_weight();
        let Ok(d) = self.varmap.data().lock() else { return 0 };
        d.iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, v)| {
                let size = if v.rank() == 2 { per_weight } else { v.dtype().size_in_bytes() as f64 };
                (v.elem_count() as f64 * size).round() as u64
            })
            .sum()
    }

    /// Bytes of the weights created so far (tower, compressors, projectors).
    pub fn weight_bytes(&self) -> u64 {
        varmap_bytes(&self.varmap)
    }

    /// The tower configuration.
    pub fn config(&self) -> &ClipVisionConfig {
        &self.cfg
    }

    /// A random image (1, 3, 336, 336).
    pub fn pixels(&self) -> Result<Tensor> {
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
        let s = self.cfg.image_size;
        kernels::random::randn(&mut rng, 1.0, (1, 3, s, s), candle_core::DType::F32, &self.device)
    }

    /// Times our tower (all 24 blocks with f32 and with bf16 weights, and the 23 LLaVA needs with
    /// feature selection) and each compressor
    /// with V = `visual_tokens` (QueCC, TokenPacker, avgpool; plus none) on its features.
    /// Errors: V not producible, candle errors.
    pub fn run(&self, visual_tokens: usize, repeats: usize) -> Result<Vec<BenchRow>> {
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(2);
        ClipVisionTower::new(&self.cfg, Mode::Inference, self.var_builder().pp("vision_model"))?; // creates the weights
        let tower = ClipVisionTower::new(&self.cfg, Mode::Inference, self.frozen_var_builder().pp("vision_model"))?;
        let pixels = self.pixels()?;
        let n_layers = self.cfg.num_hidden_layers;
        let mut rows = vec![time_it(
            &format!("vlm CLIP tower, {n_layers} blocks"),
            tower_gflop(&self.cfg, n_layers),
            repeats,
            || tower.hidden_states(&pixels, n_layers).map(|_| ()),
        )?];
        let mut tower_bf16 = tower.clone();
        tower_bf16.convert_weights(DType::BF16)?;
        rows.push(time_it(
            &format!("vlm CLIP tower, {n_layers} blocks, bf16 weights"),
            tower_gflop(&self.cfg, n_layers),
            repeats,
            || tower_bf16.hidden_states(&pixels, n_layers).map(|_| ()),
        )?);
        drop(tower_bf16);
        let layers = FeatureLayers::default();
        let depth = layers.depth(n_layers)?;
        rows.push(time_it(
            &format!("vlm CLIP tower, {depth} blocks + feature select"),
            tower_gflop(&self.cfg, depth),
            repeats,
            || extract_features(&tower, &pixels, &layers).map(|_| ()),
        )?);
        let features = extract_features(&tower, &pixels, &layers)?;
        let query =
            kernels::random::randn(&mut rng, 1.0, (1, 1, self.llm_hidden), candle_core::DType::F32, &self.device)?;
        let (g, d) = (self.cfg.grid(), self.cfg.hidden_size);
        for name in ["none", "avgpool", "quecc", "tokenpacker"] {
            let v = if name == "none" { g * g } else { visual_tokens };
            let spec = CompressorSpec::from_name(name, v, g, d, self.llm_hidden)?;
            let prefix = format!("mm_projector_{name}");
            spec.build(g, d, Mode::Inference, self.var_builder().pp(&prefix))?; // creates the weights
            let c: Box<dyn Compressor> = spec.build(g, d, Mode::Inference, self.frozen_var_builder().pp(&prefix))?;
            let gflop = compressor_gflop(&spec, g * g, d, self.llm_hidden);
            rows.push(time_it(&format!("compressor {name}, V = {v}"), gflop, repeats, || {
                c.compress(&features, Some(&query)).map(|_| ())
            })?);
        }
        Ok(rows)
    }
}

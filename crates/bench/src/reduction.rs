//! `vlmscale bench infer --token-reduction METHOD[,METHOD…]`: time to first token of one query per V
//! with each training-free token reduction ([`models::reduction`]) on plain LLaVA-1.5 at real sizes with seeded
//! random weights created in memory ([`crate::infer::RandomWeights`]; bf16 LLM matrices created as
//! bf16, so the Vicuna-7B shape fits where its f32 weights would not) — CLIP ViT-L/14-336 (the 23 blocks LLaVA's select layer −2 needs, plus block 24,
//! which PruMerge+ scores with), the `mlp2x_gelu` projector and an LLM shape — against the same query
//! with all 576 tokens, timed once for all the methods. Stages: vision (with the maps the method reads), the reduction itself,
//! projector, prefill (FastV: the pruned prefill, [`models::decoder::Decoder::prefill_fastv`]). A
//! benchmark, not a test: nothing asserts on time.
use candle_core::{DType, Device, Tensor};

use crate::infer::{random_decoder, tower_weight_bytes, RandomWeights};
use crate::vision::VisionBench;
use engine::{Error, Result};
use models::decoder::{Decoder, DecoderConfig, FastV};
use models::projector::{Projector, ProjectorKind, ProjectorLayout};
use models::reduction::{ReductionMethod, TokenReduction};
use models::vision::{extract_with_maps, ClipVisionTower, FeatureLayers, MapsRequest};
use models::Mode;

/// One measured V.
#[derive(Debug, Clone, PartialEq)]
pub struct ReductionRow {
    /// The method (`none` for the full-grid baseline).
    pub method: String,
    /// V entering the projector (FastV: kept from layer K on; adaptive PruMerge+: what it chose).
    pub visual_tokens: usize,
    /// Q, text tokens.
    pub text_tokens: usize,
    /// Vision tower, including the maps the method reads, ms.
    pub vision_ms: f64,
    /// The reduction itself (selection and merging), ms.
    pub reduction_ms: f64,
    /// Projector, ms.
    pub projector_ms: f64,
    /// LLM prefill, ms.
    pub prefill_ms: f64,
    /// vision + reduction + projector + prefill, ms.
    pub ttft_ms: f64,
    /// TTFT of the full-grid query divided by this TTFT.
    pub speedup: f64,
    /// The method's own cost: its reduction ms plus the extra vision ms of its maps over the plain
    /// tower, as a share of this TTFT.
    pub overhead_share: f64,
}

impl std::fmt::Display for ReductionRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:<20} V {:>4} Q {:>3} | vision {:>7.1} | reduction {:>6.2} | projector {:>5.1} | prefill {:>8.1} | TTFT {:>8.1} ms | speed-up {:>5.2}× | method overhead {:>5.2} %",
            self.method,
            self.visual_tokens,
            self.text_tokens,
            self.vision_ms,
            self.reduction_ms,
            self.projector_ms,
            self.prefill_ms,
            self.ttft_ms,
            self.speedup,
            100.0 * self.overhead_share
        )
    }
}

/// One [`run`]: its rows and the memory it took.
#[derive(Debug, Clone)]
pub struct ReductionRun {
    /// The full-grid baseline, then one row per request.
    pub rows: Vec<ReductionRow>,
    /// Bytes of the weights held: tower (with the scoring block), projector and LLM, matrices in the
    /// run's dtype, the rest f32.
    pub weight_bytes: u64,
    /// Peak resident set of the process from the start of the run (weight creation included), bytes
    /// (Linux `VmHWM` after `/proc/self/clear_refs`, [`kernels::memory`]); `None` where unavailable.
    pub peak_rss_bytes: Option<u64>,
}

fn best_ms(repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        let t = std::time::Instant::now();
        f()?;
        best = best.min(t.elapsed().as_secs_f64() * 1e3);
    }
    Ok(best)
}

/// Times the full-grid query once, then each of `methods` in order at each V of `visual_tokens`
/// (ignored for the adaptive PruMerge+, timed once), all on the same weights, with Q = `text_tokens`,
/// matrix weights in `weights` (f32 or bf16), best of `repeats`; `on_row` gets each row as measured
/// (the baseline first). FastV prunes at `fastv_layer`. Errors: no method, a request
/// [`TokenReduction::validate`] rejects (checked for every method before any weight is made), Q + 577
/// over the context window, an unsupported weight dtype.
#[allow(clippy::too_many_arguments)]
pub fn run(
    llm_cfg: &DecoderConfig,
    methods: &[ReductionMethod],
    visual_tokens: &[usize],
    fastv_layer: usize,
    text_tokens: usize,
    repeats: usize,
    weights: DType,
    mut on_row: impl FnMut(&ReductionRow),
) -> Result<ReductionRun> {
    let device = Device::Cpu;
    let vision = VisionBench::new(llm_cfg.hidden_size, &device);
    let vcfg = vision.config().clone();
    let (g, d, h) = (vcfg.grid(), vcfg.hidden_size, llm_cfg.hidden_size);
    let n = g * g;
    let layers = FeatureLayers::single_only(-2);
    let depth = vcfg.num_hidden_layers; // 23 for the features + block 24 for PruMerge+
    if methods.is_empty() {
        return Err(Error::Invalid("token-reduction bench: no method given".into()));
    }
    let requests: Vec<TokenReduction> = methods
        .iter()
        .flat_map(|&method| -> Vec<TokenReduction> {
            if method.adaptive() {
                vec![TokenReduction::new(method, None)]
            } else {
                visual_tokens
                    .iter()
                    .map(|&v| TokenReduction { fastv_layer, ..TokenReduction::new(method, Some(v)) })
                    .collect()
            }
        })
        .collect();
    for r in &requests {
        r.validate(g, llm_cfg.num_hidden_layers)?;
    }
    let q = text_tokens.max(1);
    if q + n + 1 > llm_cfg.max_position_embeddings {
        return Err(Error::ContextWindow { len: q + n + 1, max: llm_cfg.max_position_embeddings });
    }
    let projector_of = |vb: candle_nn::VarBuilder| {
        Projector::new(ProjectorKind::MlpGelu { depth: 2 }, d, h, ProjectorLayout::Sequential, vb.pp("mm_projector"))
    };
    // Freed memory of earlier work goes back first, so that the peak below is this run's.
    kernels::memory::release_free_memory();
    let rss_reset = kernels::memory::reset_peak_rss();
    // Seeded random weights: the tower and projector in f32, then converted (their f32 copies are
    // dropped); then the LLM, its matrices created directly in `weights` (`random_decoder`), so a
    // Vicuna-7B shape peaks near its bf16 size instead of its f32 size.
    let vb = RandomWeights::new(1, DType::F32).var_builder(&device);
    let mut tower = ClipVisionTower::new_with_depth(&vcfg, depth, Mode::Inference, vb.pp("vision_model"))?;
    let mut projector = projector_of(vb)?;
    if weights != DType::F32 {
        tower.convert_weights(weights)?;
        projector.convert_weights(weights)?;
    }
    kernels::memory::release_free_memory();
    let mut decoder = random_decoder(llm_cfg, 2, weights, &device)?;
    kernels::memory::release_free_memory();
    let mat = weights.size_in_bytes() as u64;
    let weight_bytes = tower_weight_bytes(&vcfg, depth, weights.into())
        + mat * (d * h + h * h) as u64
        + 4 * 2 * h as u64
        + decoder.weight_bytes() as u64;
    let pixels = vision.pixels()?;
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let text = kernels::random::randn(&mut rng, 0.02, (1, q, h), DType::F32, &device)?;
    let tail = kernels::random::randn(&mut rng, 0.02, (1, 1, h), DType::F32, &device)?;
    // Prompt: Q text tokens, the image, one more text token (the prompt ends with text, as LLaVA's).
    let prompt = |visual: &Tensor| -> Result<Tensor> { Ok(Tensor::cat(&[&text, visual, &tail], 1)?) };
    let prefill = |decoder: &mut Decoder, embeds: &Tensor, fastv: Option<&FastV>| -> Result<()> {
        decoder.clear_kv_cache();
        let last = match fastv {
            Some(f) => decoder.prefill_fastv(embeds, f)?.0,
            None => {
                let l = embeds.dim(1)?;
                decoder.forward_embeds(embeds, 0)?.narrow(1, l - 1, 1)?
            }
        };
        decoder.lm_head(&last)?;
        Ok(())
    };
    // Warm-up, then the plain tower and the full-grid query.
    extract_with_maps(&tower, &pixels, &layers, MapsRequest::default())?;
    let plain_vision_ms =
        best_ms(repeats, || extract_with_maps(&tower, &pixels, &layers, MapsRequest::default()).map(|_| ()))?;
    let full = extract_with_maps(&tower, &pixels, &layers, MapsRequest::default())?;
    let mut visual = None;
    let projector_ms = best_ms(repeats, || {
        visual = Some(projector.forward(&full.features.single)?);
        Ok(())
    })?;
    let embeds = prompt(&visual.ok_or_else(|| Error::Invalid("no projector output".into()))?)?;
    let prefill_ms = best_ms(repeats, || prefill(&mut decoder, &embeds, None))?;
    let base_ttft = plain_vision_ms + projector_ms + prefill_ms;
    let base = ReductionRow {
        method: "none".into(),
        visual_tokens: n,
        text_tokens: q + 1,
        vision_ms: plain_vision_ms,
        reduction_ms: 0.0,
        projector_ms,
        prefill_ms,
        ttft_ms: base_ttft,
        speedup: 1.0,
        overhead_share: 0.0,
    };
    on_row(&base);
    let mut rows = vec![base];
    for r in requests {
        let req = r.maps_request();
        let vision_ms = best_ms(repeats, || extract_with_maps(&tower, &pixels, &layers, req).map(|_| ()))?;
        let out = extract_with_maps(&tower, &pixels, &layers, req)?;
        let mut reduced = None;
        let reduction_ms = best_ms(repeats, || {
            reduced = Some(r.reduce(&out)?);
            Ok(())
        })?;
        let reduced = reduced.ok_or_else(|| Error::Invalid("no reduction output".into()))?;
        let mut visual = None;
        let projector_ms = best_ms(repeats, || {
            visual = Some(projector.forward(&reduced.tokens)?);
            Ok(())
        })?;
        let visual = visual.ok_or_else(|| Error::Invalid("no projector output".into()))?;
        let entering = visual.dim(1)?;
        let embeds = prompt(&visual)?;
        let fastv = r.fastv().map(|(layer, keep)| FastV { layer, image_start: q, image_len: entering, keep });
        let prefill_ms = best_ms(repeats, || prefill(&mut decoder, &embeds, fastv.as_ref()))?;
        let ttft_ms = vision_ms + reduction_ms + projector_ms + prefill_ms;
        let row = ReductionRow {
            method: r.method.name().into(),
            visual_tokens: fastv.map_or(entering, |f| f.keep),
            text_tokens: q + 1,
            vision_ms,
            reduction_ms,
            projector_ms,
            prefill_ms,
            ttft_ms,
            speedup: base_ttft / ttft_ms,
            overhead_share: (reduction_ms + (vision_ms - plain_vision_ms).max(0.0)) / ttft_ms,
        };
        on_row(&row);
        rows.push(row);
    }
    decoder.clear_kv_cache();
    Ok(ReductionRun {
        rows,
        weight_bytes,
        peak_rss_bytes: if rss_reset { kernels::memory::peak_rss_bytes() } else { None },
    })
}

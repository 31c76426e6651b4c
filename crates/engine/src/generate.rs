//! Generation: prefill of the LLM input embeddings, then a decode loop with the decoder's KV cache —
//! greedy or temperature / top-p sampling with a seed, stop tokens, max new tokens, a per-token
//! callback for streaming, and timings.
use std::time::Instant;

use candle_core::{DType, IndexOp, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;

use crate::{Error, Result};
use models::decoder::{Decoder, FastV};

/// How to pick tokens and when to stop.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateConfig {
    /// Maximum number of new tokens (the stop token is not counted and not returned).
    pub max_new_tokens: usize,
    /// Softmax temperature; `0.0` means greedy (argmax).
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of most likely tokens whose probability sum reaches
    /// `top_p` (HF `TopPLogitsWarper`); `1.0` disables it. Ignored when greedy.
    pub top_p: f64,
    /// Seed of the sampler's ChaCha20 generator.
    pub seed: u64,
    /// Generation stops when one of these ids is produced (e.g. from
    /// [`crate::text::TextTokenizer::stop_token_ids`]).
    pub stop_token_ids: Vec<u32>,
}

impl Default for GenerateConfig {
    fn default() -> Self {
        Self { max_new_tokens: 128, temperature: 0.0, top_p: 1.0, seed: 0, stop_token_ids: vec![] }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// A stop token was produced.
    StopToken,
    /// `max_new_tokens` were produced.
    MaxNewTokens,
    /// The context window (`max_position_embeddings`) is full.
    ContextFull,
}

/// Wall-clock timings of one generation (LLM only: vision, compressor and query embedding are
/// timed by the caller).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Timings {
    /// LLM input length (Q + V) prefilled.
    pub prompt_tokens: usize,
    /// Prefill time, ms.
    pub prefill_ms: f64,
    /// Time to first token from the start of prefill (prefill + first sampling), ms.
    pub ttft_ms: f64,
    /// Tokens produced by decode steps (all new tokens after the first).
    pub decode_tokens: usize,
    /// Total decode time, ms.
    pub decode_ms: f64,
    /// Decode throughput, tokens/s (0 if no decode step ran).
    pub decode_tokens_per_s: f64,
}

/// Result of [`generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// New token ids (stop token excluded).
    pub tokens: Vec<u32>,
    /// Why it ended.
    pub stop: StopReason,
    /// Timings.
    pub timings: Timings,
}

/// Picks the next token from a logits row.
#[derive(Debug, Clone)]
pub struct Sampler {
    temperature: f64,
    top_p: f64,
    rng: ChaCha20Rng,
}

impl Sampler {
    /// A sampler with `cfg`'s temperature, top-p and seed.
    ///
    /// Errors: [`Error::Invalid`] if temperature < 0 or top_p ∉ (0, 1] or either is not finite.
    pub fn new(cfg: &GenerateConfig) -> Result<Self> {
        if !(cfg.temperature.is_finite() && cfg.temperature >= 0.0) {
            return Err(Error::Invalid(format!("temperature must be >= 0, got {}", cfg.temperature)));
        }
        if !(cfg.top_p > 0.0 && cfg.top_p <= 1.0) {
            return Err(Error::Invalid(format!("top_p must be in (0, 1], got {}", cfg.top_p)));
        }
        Ok(Self { temperature: cfg.temperature, top_p: cfg.top_p, rng: ChaCha20Rng::seed_from_u64(cfg.seed) })
    }

    /// `logits`: (vocab,) → token id. Greedy ties go to the lowest id (as `torch.argmax`).
    pub fn sample(&mut self, logits: &Tensor) -> Result<u32> {
        let logits: Vec<f32> = logits.to_dtype(DType::F32)?.to_vec1()?;
        if logits.is_empty() {
            return Err(Error::Invalid("empty logits".into()));
        }
        let argmax = logits
            .iter()
            .enumerate()
            .fold((0usize, f32::NEG_INFINITY), |best, (i, &x)| if x > best.1 { (i, x) } else { best })
            .0;
        if self.temperature == 0.0 {
            return Ok(argmax as u32);
        }
        let max = logits[argmax] as f64;
        let mut probs: Vec<(usize, f64)> =
            logits.iter().enumerate().map(|(i, &x)| (i, ((x as f64 - max) / self.temperature).exp())).collect();
        let z: f64 = probs.iter().map(|p| p.1).sum();
        probs.iter_mut().for_each(|p| p.1 /= z);
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut keep = probs.len();
        if self.top_p < 1.0 {
            let mut cum = 0.0;
            for (k, p) in probs.iter().enumerate() {
                cum += p.1;
                if cum >= self.top_p {
                    keep = k + 1;
                    break;
                }
            }
        }
        let kept = &probs[..keep];
        let mass: f64 = kept.iter().map(|p| p.1).sum();
        let mut u = self.rng.random::<f64>() * mass;
        for p in kept {
            if u < p.1 {
                return Ok(p.0 as u32);
            }
            u -= p.1;
        }
        Ok(kept[keep - 1].0 as u32)
    }
}

/// Generates from the LLM input `embeds` (1, L, H) (e.g. [`crate::text::input_embeddings`]).
/// Clears the decoder's KV cache first; `on_token` is called with each new token id as soon as it
/// is chosen (stream it with [`crate::text::TokenStream`]); an error from it aborts generation.
///
/// Errors: [`Error::Invalid`] for a batch other than 1 or a bad sampler setting;
/// [`Error::ContextWindow`] if L exceeds the context window; decoder errors.
pub fn generate(
    decoder: &mut Decoder,
    embeds: &Tensor,
    cfg: &GenerateConfig,
    on_token: impl FnMut(u32) -> Result<()>,
) -> Result<Generation> {
    generate_with_fastv(decoder, embeds, cfg, None, on_token)
}

/// [`generate`] whose prefill prunes image tokens with FastV ([`Decoder::prefill_fastv`]) when `fastv`
/// is given; decode steps then run over the per-layer KV lengths it leaves. Errors: those of
/// [`generate`] and of [`Decoder::prefill_fastv`].
pub fn generate_with_fastv(
    decoder: &mut Decoder,
    embeds: &Tensor,
    cfg: &GenerateConfig,
    fastv: Option<&FastV>,
    mut on_token: impl FnMut(u32) -> Result<()>,
) -> Result<Generation> {
    let (b, l, _) = embeds.dims3()?;
    if b != 1 {
        return Err(Error::Invalid(format!("generate takes one sequence, got a batch of {b}")));
    }
    let mut sampler = Sampler::new(cfg)?;
    let max_pos = decoder.config().max_position_embeddings;
    decoder.clear_kv_cache();
    let mut timings = Timings { prompt_tokens: l, ..Timings::default() };
    let mut tokens = vec![];
    if cfg.max_new_tokens == 0 {
        return Ok(Generation { tokens, stop: StopReason::MaxNewTokens, timings });
    }
    let t0 = Instant::now();
    let last = match fastv {
        Some(f) => decoder.prefill_fastv(embeds, f)?.0,
        None => decoder.forward_embeds(embeds, 0)?.narrow(1, l - 1, 1)?,
    };
    let mut logits = decoder.lm_head(&last)?.i((0, 0))?;
    // Force the computation before reading the clock (candle CPU ops are eager).
    timings.prefill_ms = t0.elapsed().as_secs_f64() * 1e3;
    let mut stop = StopReason::MaxNewTokens;
    let mut decode_start = None;
    loop {
        let next = sampler.sample(&logits)?;
        if tokens.is_empty() {
            timings.ttft_ms = t0.elapsed().as_secs_f64() * 1e3;
            decode_start = Some(Instant::now());
        }
        if cfg.stop_token_ids.contains(&next) {
            stop = StopReason::StopToken;
            break;
        }
        tokens.push(next);
        on_token(next)?;
        if tokens.len() >= cfg.max_new_tokens {
            break;
        }
        let pos = decoder.kv_len();
        if pos >= max_pos {
            stop = StopReason::ContextFull;
            break;
        }
        let ids = Tensor::new(&[[next]], decoder.device())?;
        let h = decoder.forward_embeds(&decoder.embed_tokens(&ids)?, pos)?;
        logits = decoder.lm_head(&h)?.i((0, 0))?;
        timings.decode_tokens += 1;
    }
    if let Some(s) = decode_start {
        timings.decode_ms = s.elapsed().as_secs_f64() * 1e3;
        if timings.decode_tokens > 0 && timings.decode_ms > 0.0 {
            timings.decode_tokens_per_s = timings.decode_tokens as f64 / (timings.decode_ms / 1e3);
        }
    }
    Ok(Generation { tokens, stop, timings })
}

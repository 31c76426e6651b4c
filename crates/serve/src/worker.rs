//! The generation worker: one OS thread owns every loaded [`Vlm`] and generates up to
//! [`MAX_RUNNING`] queued jobs at once, one decode step of each per round (see [`run`]); the engine is
//! CPU-bound and parallel inside each op, so tokio's threads never run model code. Jobs arrive through
//! a bounded channel; text goes back through a per-job channel as it is generated. Before each token
//! the worker checks the job's cancel flag (set when the client disconnects) and after it the deadline
//! (the per-request timeout); a job cancelled while queued never starts. A panic inside the engine
//! fails that job with a 500 and the worker goes on.
//!
//! The per-token loop follows `engine::generate::generate` (prefill, sample, stop on a stop token, max
//! new tokens or a full context) but runs step by step so that sequences can take turns.
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use candle_core::IndexOp;
use candle_core::{DType, Device, Tensor};
use engine::generate::{GenerateConfig, Sampler};
use engine::model::{LoadOptions, Vlm};
use engine::text::{input_embeddings, PromptTokens, Template, TextTokenizer, TokenStream};
use image::DynamicImage;
use models::decoder::{FastV, KvCache};
use tokio::sync::mpsc::UnboundedSender;

use crate::error::{ApiError, ServeError};
use crate::metrics::Metrics;
use crate::reduction::{self, NativeTokens, VisualPlan};

/// What the HTTP side knows of a served model (no weights).
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// The id requests name (`model`).
    pub id: String,
    /// The checkpoint directory.
    pub dir: PathBuf,
    /// N, the LLM's parameters.
    pub llm_params: usize,
    /// The LLM architecture (`qwen2`, `llama`).
    pub architecture: &'static str,
    /// The native V and compressor.
    pub native: NativeTokens,
    /// `max_position_embeddings`: Q + V + new tokens must fit.
    pub context: usize,
    /// The tokenizer (for prompt lengths before queueing).
    pub tokenizer: TextTokenizer,
    /// The conversation template.
    pub template: Template,
}

impl ModelInfo {
    /// The templated, tokenised prompt of a dialogue (`Template::chat_prompt`).
    pub fn prompt(&self, d: &crate::api::Dialogue, image: bool) -> engine::Result<PromptTokens> {
        let prompt = self.template.chat_prompt(d.system.as_deref(), &d.history, &d.question, image);
        self.tokenizer.tokenize_with_image(&prompt)
    }
}

/// Loads one checkpoint. `bf16`: matrix weights in bf16 with f32 activations (`--weights bf16`).
pub fn load_model(id: String, dir: PathBuf, bf16: bool) -> Result<(ModelInfo, Vlm), ServeError> {
    let load_err = |source| ServeError::Load { dir: dir.clone(), source };
    // With the vision block PruMerge+ scores with (one block, run only by PruMerge+).
    let load = LoadOptions { token_reduction: true };
    let mut vlm = Vlm::load_with(&dir, None, DType::F32, &Device::Cpu, &load).map_err(load_err)?;
    if bf16 {
        vlm.convert_weights(DType::BF16).map_err(load_err)?;
    }
    let cfg = vlm.decoder().config();
    let info = ModelInfo {
        id,
        llm_params: cfg.num_parameters(),
        architecture: engine::model::architecture_name(cfg.architecture),
        context: cfg.max_position_embeddings,
        native: NativeTokens::of(&vlm),
        tokenizer: vlm.tokenizer().clone(),
        template: vlm.template(),
        dir,
    };
    Ok((info, vlm))
}

/// One generation request, validated.
#[derive(Debug)]
pub struct Job {
    /// Index of the model.
    pub model: usize,
    /// The user's text (QueCC's query).
    pub question: String,
    /// The templated prompt.
    pub prompt: PromptTokens,
    /// The image, decoded.
    pub image: Option<DynamicImage>,
    /// How its visual tokens are produced.
    pub plan: VisualPlan,
    /// Max new tokens.
    pub max_new_tokens: usize,
    /// Temperature (0 = greedy).
    pub temperature: f64,
    /// Top-p.
    pub top_p: f64,
    /// Seed.
    pub seed: u64,
    /// Stop sequences.
    pub stop: Vec<String>,
    /// Set when the client went away.
    pub cancel: Arc<AtomicBool>,
    /// When the request arrived (TTFT counts from here).
    pub arrived: Instant,
    /// When it entered the queue (after parsing and image decoding).
    pub queued: Instant,
    /// When it must be finished.
    pub deadline: Instant,
    /// The per-request timeout in seconds, for the error message.
    pub timeout_s: f64,
    /// Where text and the outcome go.
    pub events: UnboundedSender<Event>,
}

/// What the worker reports about a job.
#[derive(Debug)]
pub enum Event {
    /// New answer text (stop sequences already cut).
    Text(String),
    /// Finished.
    Done(Finished),
    /// Failed.
    Error(ApiError),
}

/// The outcome of a finished job.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The whole answer.
    pub text: String,
    /// `stop` or `length`.
    pub finish_reason: &'static str,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Q.
    pub text_tokens: usize,
    /// V.
    pub visual_tokens: usize,
    /// Arrival to first token, ms (arrival to the end when no token was produced).
    pub ttft_ms: f64,
    /// Wait in the queue for the worker, ms.
    pub queue_ms: f64,
    /// Decode tokens/s after the first token.
    pub decode_tokens_per_s: f64,
}

/// Holds the worker before it takes a job (tests use it to fix what is queued when), and cuts every
/// job when the shutdown grace period is over.
#[derive(Debug, Default)]
pub struct Gate {
    held: Mutex<bool>,
    cv: Condvar,
    cut: AtomicBool,
}

impl Gate {
    /// A gate, held or open.
    pub fn new(held: bool) -> Self {
        Self { held: Mutex::new(held), cv: Condvar::new(), cut: AtomicBool::new(false) }
    }

    /// From now on every job is cancelled (queued ones never start, the running one stops at its next
    /// token).
    pub fn cut_all(&self) {
        self.cut.store(true, Ordering::SeqCst);
    }

    /// Opens the gate.
    pub fn release(&self) {
        *self.held.lock().unwrap_or_else(|p| p.into_inner()) = false;
        self.cv.notify_all();
    }

    fn wait(&self) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        while *held {
            held = self.cv.wait(held).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// Sequences generated at once: one batched decode step of all of them per round.
pub const MAX_RUNNING: usize = 4;

/// The worker loop: runs until every sender of `rx` is dropped and nothing is running.
///
/// Each round admits at most one queued job (its image encoding and prefill), then every running
/// sequence samples its next token, and the continuing sequences of each model are decoded together
/// in one batched step (`Decoder::decode_batch`, each over its own KV cache): continuous batching, so
/// the weights are read once per round for all of them while decode is memory-bound. A new request's
/// first token waits for at most one round, not for the running answers, and a long prefill holds
/// running decodes back by one round.
pub fn run(mut models: Vec<Vlm>, names: Vec<String>, rx: Receiver<Job>, metrics: Arc<Metrics>, gate: Arc<Gate>) {
    let mut running: Vec<Sequence> = Vec::with_capacity(MAX_RUNNING);
    let mut closed = false;
    loop {
        if !closed && running.len() < MAX_RUNNING {
            let next = if running.is_empty() {
                gate.wait();
                rx.recv().ok()
            } else {
                match rx.try_recv() {
                    Ok(job) => Some(job),
                    Err(TryRecvError::Empty) => None,
                    Err(TryRecvError::Disconnected) => None,
                }
            };
            match next {
                Some(job) => {
                    metrics.dequeued();
                    if let Some(seq) = admit(&mut models, job, &metrics, &gate) {
                        running.push(seq);
                    }
                }
                None if running.is_empty() => closed = true,
                None => {}
            }
        }
        if running.is_empty() {
            if closed {
                return;
            }
            continue;
        }
        // 1. Each sequence samples its next token and streams it, or ends.
        let mut ends: Vec<Option<Step>> = Vec::with_capacity(running.len());
        let mut next: Vec<Option<u32>> = Vec::with_capacity(running.len());
        for seq in running.iter_mut() {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| seq.advance(&metrics, &gate.cut)));
            let (end, id) = match outcome {
                Ok(Ok(Advance::Decode(id))) => (None, Some(id)),
                Ok(Ok(Advance::End(step))) => (Some(step), None),
                Ok(Err(e)) => (Some(Step::Finished(Err(e))), None),
                Err(panic) => (Some(Step::Finished(Err(panic_error(panic)))), None),
            };
            ends.push(end);
            next.push(id);
        }
        // 2. One batched decode step per model over its continuing sequences (continuous batching).
        for (m, vlm) in models.iter_mut().enumerate() {
            let rows: Vec<usize> =
                (0..running.len()).filter(|&i| next[i].is_some() && running[i].job.model == m).collect();
            if rows.is_empty() {
                continue;
            }
            let ids: Vec<u32> = rows.iter().filter_map(|&i| next[i]).collect();
            let mut caches: Vec<KvCache> = rows.iter().map(|&i| running[i].kv.take().unwrap_or_default()).collect();
            metrics.decode_step(rows.len());
            let decoder = vlm.decoder_mut();
            let step = std::panic::catch_unwind(AssertUnwindSafe(|| decoder.decode_batch(&ids, &mut caches)));
            match step {
                Ok(Ok(logits)) => {
                    for (row, (&i, cache)) in rows.iter().zip(caches).enumerate() {
                        let seq = &mut running[i];
                        seq.kv = Some(cache);
                        match logits.i(row) {
                            Ok(l) => seq.logits = l,
                            Err(e) => ends[i] = Some(Step::Finished(Err(ApiError::from_engine(&e.into())))),
                        }
                    }
                }
                Ok(Err(e)) => {
                    let e = ApiError::from_engine(&e);
                    rows.iter().for_each(|&i| ends[i] = Some(Step::Finished(Err(e.clone()))));
                }
                Err(panic) => {
                    let e = panic_error(panic);
                    rows.iter().for_each(|&i| ends[i] = Some(Step::Finished(Err(e.clone()))));
                }
            }
        }
        // 3. Sequences that ended send their outcome and leave.
        let mut ends = ends.into_iter();
        running.retain_mut(|seq| {
            let done = match ends.next().flatten() {
                None => return true,
                Some(Step::Finished(Ok(f))) => {
                    metrics.completion(
                        &names[seq.job.model],
                        f.visual_tokens,
                        f.text_tokens + f.visual_tokens,
                        f.completion_tokens,
                    );
                    Some(Event::Done(f))
                }
                Some(Step::Finished(Err(e))) => Some(Event::Error(e)),
                Some(Step::Cancelled) if gate.cut.load(Ordering::SeqCst) => {
                    Some(Event::Error(ApiError::shutting_down()))
                }
                Some(Step::Cancelled) => {
                    metrics.error("client_disconnected");
                    None
                }
            };
            metrics.running(-1);
            if let Some(ev) = done {
                let _ = seq.job.events.send(ev);
            }
            false
        });
    }
}

fn panic_error(panic: Box<dyn std::any::Any + Send>) -> ApiError {
    let msg = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!("generation panicked: {msg}");
    ApiError::internal(format!("the engine failed on this request: {msg}"))
}

/// Checks a dequeued job and runs its image encoding and prefill; `None` if it ended there (an error
/// or outcome has been sent, or nobody listens).
fn admit(models: &mut [Vlm], job: Job, metrics: &Metrics, gate: &Gate) -> Option<Sequence> {
    if gate.cut.load(Ordering::SeqCst) {
        let _ = job.events.send(Event::Error(ApiError::shutting_down()));
        return None;
    }
    if job.cancel.load(Ordering::Relaxed) {
        metrics.error("client_disconnected");
        return None;
    }
    if Instant::now() > job.deadline {
        let _ = job.events.send(Event::Error(ApiError::timeout(job.timeout_s)));
        return None;
    }
    let vlm = &mut models[job.model];
    match std::panic::catch_unwind(AssertUnwindSafe(|| prefill(vlm, &job))) {
        Ok(Ok((kv, logits, sampler, visual_tokens, start))) => {
            metrics.running(1);
            Some(Sequence {
                stream: TokenStream::new(vlm.tokenizer().clone()),
                stop_ids: vlm.stop_token_ids().to_vec(),
                max_pos: vlm.decoder().config().max_position_embeddings,
                kv: Some(kv),
                logits,
                sampler,
                visual_tokens,
                start,
                text: String::new(),
                sent: 0,
                produced: 0,
                first: None,
                last: start,
                job,
            })
        }
        Ok(Err(e)) => {
            let _ = job.events.send(Event::Error(e));
            None
        }
        Err(panic) => {
            let _ = job.events.send(Event::Error(panic_error(panic)));
            None
        }
    }
}

/// Vision tower, compressor / reduction, projector, splice, prefill: the KV cache, the first token's
/// logits, the sampler, V and when the work started.
fn prefill(vlm: &mut Vlm, job: &Job) -> Result<(KvCache, Tensor, Sampler, usize, Instant), ApiError> {
    let start = Instant::now();
    let engine_err = |e: engine::Error| ApiError::from_engine(&e);
    let cfg = GenerateConfig {
        max_new_tokens: job.max_new_tokens,
        temperature: job.temperature,
        top_p: job.top_p,
        seed: job.seed,
        stop_token_ids: vlm.stop_token_ids().to_vec(),
    };
    let sampler = Sampler::new(&cfg).map_err(engine_err)?;
    let visual = match &job.image {
        Some(img) => {
            let pixels = vlm.preprocess(img).map_err(engine_err)?;
            Some(reduction::visual_embeddings(vlm, &job.plan, &pixels, &job.question).map_err(engine_err)?)
        }
        None => None,
    };
    let embeds = input_embeddings(vlm.decoder(), &job.prompt, visual.as_ref()).map_err(engine_err)?;
    let l = embeds.dim(1).map_err(|e| engine_err(e.into()))?;
    // FastV: every patch token enters, the V kept ones survive layer K.
    let fastv = match (&visual, job.plan.reduction().and_then(|r| r.fastv())) {
        (Some(vis), Some((layer, keep))) => {
            let image_len = vis.dim(1).map_err(|e| engine_err(e.into()))?;
            let image_start = *job
                .prompt
                .image_positions(image_len)
                .first()
                .ok_or_else(|| engine_err(engine::Error::Invalid("FastV needs an <image> in the prompt".into())))?;
            Some(FastV { layer, image_start, image_len, keep })
        }
        _ => None,
    };
    let visual_tokens = match (&visual, &fastv) {
        (_, Some(f)) => f.keep,
        // The V produced (the adaptive PruMerge+ chooses it per image).
        (Some(vis), None) => vis.dim(1).map_err(|e| engine_err(e.into()))?,
        (None, None) => 0,
    };
    let decoder = vlm.decoder_mut();
    decoder.clear_kv_cache();
    let logits = (|| -> engine::Result<Tensor> {
        let last = match &fastv {
            Some(f) => decoder.prefill_fastv(&embeds, f)?.0,
            None => decoder.forward_embeds(&embeds, 0)?.narrow(1, l - 1, 1)?,
        };
        Ok(decoder.lm_head(&last)?.i((0, 0))?)
    })()
    .map_err(engine_err)?;
    Ok((decoder.take_kv_cache(), logits, sampler, visual_tokens, start))
}

/// How a sequence ended.
enum Step {
    Finished(Result<Finished, ApiError>),
    /// The client went away (or the shutdown cut it).
    Cancelled,
}

/// What a sequence does after sampling its next token.
enum Advance {
    /// Run the decoder on this token (in the round's batched step).
    Decode(u32),
    /// The generation ends.
    End(Step),
}

/// A running generation.
struct Sequence {
    job: Job,
    /// Its KV cache while another sequence's is in the decoder.
    kv: Option<KvCache>,
    /// Logits of the next token.
    logits: Tensor,
    sampler: Sampler,
    stream: TokenStream,
    stop_ids: Vec<u32>,
    max_pos: usize,
    visual_tokens: usize,
    start: Instant,
    text: String,
    sent: usize,
    produced: usize,
    first: Option<Instant>,
    last: Instant,
}

impl Sequence {
    /// Samples one token and streams its text; then either the generation ends or the token is to be
    /// decoded (by the worker's batched step, which puts the next logits and the cache back).
    fn advance(&mut self, metrics: &Metrics, cut: &AtomicBool) -> Result<Advance, ApiError> {
        let engine_err = |e: engine::Error| ApiError::from_engine(&e);
        let job = &self.job;
        if job.cancel.load(Ordering::Relaxed) || cut.load(Ordering::Relaxed) {
            return Ok(Advance::End(Step::Cancelled));
        }
        let next = self.sampler.sample(&self.logits).map_err(engine_err)?;
        let now = Instant::now();
        match self.first {
            None => {
                self.first = Some(now);
                metrics.ttft((now - job.arrived).as_secs_f64());
            }
            Some(_) => metrics.token_latency((now - self.last).as_secs_f64()),
        }
        self.last = now;
        if self.stop_ids.contains(&next) {
            return Ok(Advance::End(Step::Finished(self.finish("stop", false))));
        }
        self.produced += 1;
        if now > job.deadline {
            return Err(ApiError::timeout(job.timeout_s));
        }
        self.text.push_str(&self.stream.push(next).map_err(engine_err)?);
        if let Some(pos) = find_stop(&self.text, &job.stop) {
            self.text.truncate(pos);
            return Ok(Advance::End(Step::Finished(self.finish("stop", true))));
        }
        let safe = self.text.len() - holdback(&self.text, &job.stop);
        if safe > self.sent {
            if job.events.send(Event::Text(self.text[self.sent..safe].to_string())).is_err() {
                return Ok(Advance::End(Step::Cancelled));
            }
            self.sent = safe;
        }
        let kv_len = self.kv.as_ref().map_or(0, KvCache::len);
        if self.produced >= job.max_new_tokens || kv_len >= self.max_pos {
            return Ok(Advance::End(Step::Finished(self.finish("length", false))));
        }
        Ok(Advance::Decode(next))
    }

    /// The outcome. `cut`: the text already ends at a stop sequence; else it is re-decoded from all
    /// tokens (the incremental detokeniser may hold back an incomplete character at the very end).
    fn finish(&mut self, reason: &'static str, cut: bool) -> Result<Finished, ApiError> {
        if !cut {
            let streamed = self.text[..self.sent].to_string();
            self.text = self.stream.text().map_err(|e| ApiError::from_engine(&e))?;
            if let Some(pos) = find_stop(&self.text, &self.job.stop) {
                self.text.truncate(pos);
            }
            if !self.text.starts_with(&streamed) {
                self.sent = self.text.len();
            }
        }
        if self.text.len() > self.sent {
            let _ = self.job.events.send(Event::Text(self.text[self.sent..].to_string()));
            self.sent = self.text.len();
        }
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
        let end = Instant::now();
        let decode_tokens_per_s = match self.first {
            Some(f) if self.produced > 1 && self.last > f => (self.produced - 1) as f64 / (self.last - f).as_secs_f64(),
            _ => 0.0,
        };
        Ok(Finished {
            text: std::mem::take(&mut self.text),
            finish_reason: reason,
            completion_tokens: self.produced,
            text_tokens: self.job.prompt.text_len(),
            visual_tokens: self.visual_tokens,
            ttft_ms: ms(self.first.unwrap_or(end) - self.job.arrived),
            queue_ms: ms(self.start.saturating_duration_since(self.job.queued)),
            decode_tokens_per_s,
        })
    }
}

/// Earliest position of any stop sequence in `text`.
fn find_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min()
}

/// Length of the longest suffix of `text` that is a proper prefix of a stop sequence: text that must
/// be held back while streaming because the next token may complete the sequence.
fn holdback(text: &str, stops: &[String]) -> usize {
    let mut best = 0;
    for s in stops {
        for k in (1..s.len()).rev() {
            if k > best
                && text.len() >= k
                && s.is_char_boundary(k)
                && text.is_char_boundary(text.len() - k)
                && text.ends_with(&s[..k])
            {
                best = k;
                break;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_sequences_and_holdback() {
        let stops = vec!["END".to_string(), "\n\n".to_string()];
        assert_eq!(find_stop("abc END def", &stops), Some(4));
        assert_eq!(find_stop("a\n\nb END", &stops), Some(1));
        assert_eq!(find_stop("abc", &stops), None);
        assert_eq!(holdback("abc EN", &stops), 2);
        assert_eq!(holdback("abc E", &stops), 1);
        assert_eq!(holdback("abc\n", &stops), 1);
        assert_eq!(holdback("abc", &stops), 0);
        assert_eq!(holdback("é", &["éa".to_string()]), 2, "multi-byte prefixes are held back whole");
        assert_eq!(holdback("x", &[]), 0);
    }
}

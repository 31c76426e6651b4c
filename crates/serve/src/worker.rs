//! The generation worker: one OS thread owns every loaded [`Vlm`] and runs queued jobs one at a time
//! (the engine is CPU-bound and parallel inside each op, so tokio's threads never run model code).
//! Jobs arrive through a bounded channel; text goes back through a per-job channel as it is
//! generated. Between two tokens the worker checks the job's cancel flag (set when the client
//! disconnects) and its deadline (the per-request timeout); a job cancelled while queued never starts.
//! A panic inside the engine fails that job with a 500 and the worker goes on.
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use candle_core::{DType, Device};
use engine::generate::{generate, GenerateConfig, StopReason};
use engine::model::Vlm;
use engine::text::{input_embeddings, PromptTokens, Template, TextTokenizer, TokenStream};
use image::DynamicImage;
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
    /// The templated, tokenised single-turn prompt.
    pub fn prompt(&self, question: &str, image: bool) -> engine::Result<PromptTokens> {
        self.tokenizer.tokenize_with_image(&self.template.prompt(question, image))
    }
}

/// Loads one checkpoint. `bf16`: matrix weights in bf16 with f32 activations (`--weights bf16`).
pub fn load_model(id: String, dir: PathBuf, bf16: bool) -> Result<(ModelInfo, Vlm), ServeError> {
    let load_err = |source| ServeError::Load { dir: dir.clone(), source };
    let mut vlm = Vlm::load(&dir, None, DType::F32, &Device::Cpu).map_err(load_err)?;
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

/// The worker loop: runs until every sender of `rx` is dropped.
pub fn run(mut models: Vec<Vlm>, names: Vec<String>, rx: Receiver<Job>, metrics: Arc<Metrics>, gate: Arc<Gate>) {
    loop {
        gate.wait();
        let Ok(job) = rx.recv() else { return };
        metrics.dequeued();
        if gate.cut.load(Ordering::SeqCst) {
            let _ = job.events.send(Event::Error(ApiError::shutting_down()));
            continue;
        }
        if job.cancel.load(Ordering::Relaxed) {
            metrics.error("client_disconnected");
            continue;
        }
        if Instant::now() > job.deadline {
            let _ = job.events.send(Event::Error(ApiError::timeout(job.timeout_s)));
            continue;
        }
        metrics.running(1);
        let events = job.events.clone();
        let vlm = &mut models[job.model];
        let name = &names[job.model];
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run_job(vlm, &job, &metrics, &gate.cut)));
        metrics.running(-1);
        let event = match outcome {
            Ok(Ok(Some(done))) => {
                metrics.completion(
                    name,
                    done.visual_tokens,
                    done.text_tokens + done.visual_tokens,
                    done.completion_tokens,
                );
                Event::Done(done)
            }
            // Cut by the shutdown: tell the client if it still listens.
            Ok(Ok(None)) if gate.cut.load(Ordering::SeqCst) => Event::Error(ApiError::shutting_down()),
            // Cancelled: nobody is listening.
            Ok(Ok(None)) => {
                metrics.error("client_disconnected");
                continue;
            }
            Ok(Err(e)) => Event::Error(e),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("unknown panic");
                tracing::error!("generation panicked: {msg}");
                Event::Error(ApiError::internal(format!("the engine failed on this request: {msg}")))
            }
        };
        let _ = events.send(event);
    }
}

/// Why the token callback stopped generation early.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Abort {
    Cancelled,
    Timeout,
    StopSequence,
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

/// Runs one job. `Ok(None)`: cancelled by the client.
fn run_job(vlm: &mut Vlm, job: &Job, metrics: &Metrics, cut: &AtomicBool) -> Result<Option<Finished>, ApiError> {
    let start = Instant::now();
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    let queue_ms = ms(start.saturating_duration_since(job.queued));
    let engine_err = |e: engine::Error| ApiError::from_engine(&e);
    let visual = match &job.image {
        Some(img) => {
            let pixels = vlm.preprocess(img).map_err(engine_err)?;
            Some(reduction::visual_embeddings(vlm, &job.plan, &pixels, &job.question).map_err(engine_err)?)
        }
        None => None,
    };
    let visual_tokens = if visual.is_some() { job.plan.visual_tokens } else { 0 };
    let embeds = input_embeddings(vlm.decoder(), &job.prompt, visual.as_ref()).map_err(engine_err)?;
    let cfg = GenerateConfig {
        max_new_tokens: job.max_new_tokens,
        temperature: job.temperature,
        top_p: job.top_p,
        seed: job.seed,
        stop_token_ids: vlm.stop_token_ids().to_vec(),
    };
    let mut stream = TokenStream::new(vlm.tokenizer().clone());
    let mut text = String::new();
    let mut sent = 0usize;
    let mut abort = None;
    let mut first: Option<Instant> = None;
    let mut last = Instant::now();
    let mut produced = 0usize;
    let result = generate(vlm.decoder_mut(), &embeds, &cfg, |id| {
        let now = Instant::now();
        match first {
            None => {
                first = Some(now);
                metrics.ttft((now - job.arrived).as_secs_f64());
            }
            Some(_) => metrics.token_latency((now - last).as_secs_f64()),
        }
        last = now;
        produced += 1;
        let stop_with = |a| engine::Error::Invalid(format!("generation stopped: {a:?}"));
        if job.cancel.load(Ordering::Relaxed) || cut.load(Ordering::Relaxed) {
            abort = Some(Abort::Cancelled);
            return Err(stop_with(Abort::Cancelled));
        }
        if now > job.deadline {
            abort = Some(Abort::Timeout);
            return Err(stop_with(Abort::Timeout));
        }
        text.push_str(&stream.push(id)?);
        if let Some(pos) = find_stop(&text, &job.stop) {
            text.truncate(pos);
            if pos > sent {
                let _ = job.events.send(Event::Text(text[sent..].to_string()));
                sent = pos;
            }
            abort = Some(Abort::StopSequence);
            return Err(stop_with(Abort::StopSequence));
        }
        let safe = text.len() - holdback(&text, &job.stop);
        if safe > sent {
            if job.events.send(Event::Text(text[sent..safe].to_string())).is_err() {
                abort = Some(Abort::Cancelled);
                return Err(stop_with(Abort::Cancelled));
            }
            sent = safe;
        }
        Ok(())
    });
    let finish_reason = match (result, abort) {
        (_, Some(Abort::Cancelled)) => return Ok(None),
        (_, Some(Abort::Timeout)) => return Err(ApiError::timeout(job.timeout_s)),
        (_, Some(Abort::StopSequence)) => "stop",
        (Err(e), None) => return Err(engine_err(e)),
        (Ok(gen), None) => {
            // The answer is the decode of all tokens (the incremental detokeniser may hold back an
            // incomplete character at the very end); the stream gets what it has not seen.
            let streamed = text[..sent].to_string();
            text = stream.text().map_err(engine_err)?;
            if let Some(pos) = find_stop(&text, &job.stop) {
                text.truncate(pos);
            }
            if !text.starts_with(&streamed) {
                sent = text.len();
            }
            match gen.stop {
                StopReason::StopToken => "stop",
                StopReason::MaxNewTokens | StopReason::ContextFull => "length",
            }
        }
    };
    if text.len() > sent {
        let _ = job.events.send(Event::Text(text[sent..].to_string()));
    }
    let end = Instant::now();
    let ttft_ms = ms(first.unwrap_or(end) - job.arrived);
    let decode_tokens_per_s = match first {
        Some(f) if produced > 1 && last > f => (produced - 1) as f64 / (last - f).as_secs_f64(),
        _ => 0.0,
    };
    Ok(Some(Finished {
        text,
        finish_reason,
        completion_tokens: produced,
        text_tokens: job.prompt.text_len(),
        visual_tokens,
        ttft_ms,
        queue_ms,
        decode_tokens_per_s,
    }))
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

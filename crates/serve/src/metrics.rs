//! `GET /metrics`: counters, gauges and histograms in the Prometheus text exposition format
//! (version 0.0.4), written by hand — a few families do not need a metrics library.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;

/// Upper bounds (seconds) of the time-to-first-token histogram.
const TTFT_BUCKETS: [f64; 14] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0];
/// Upper bounds (seconds) of the per-token (decode step) latency histogram.
const TOKEN_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
/// Upper bounds of the visual-tokens-per-request histogram.
const V_BUCKETS: [f64; 9] = [0.0, 1.0, 4.0, 16.0, 36.0, 64.0, 144.0, 256.0, 576.0];

#[derive(Debug, Clone)]
struct Histogram {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Self {
        Self { bounds, counts: vec![0; bounds.len()], sum: 0.0, count: 0 }
    }

    fn observe(&mut self, x: f64) {
        for (b, c) in self.bounds.iter().zip(self.counts.iter_mut()) {
            if x <= *b {
                *c += 1;
            }
        }
        self.sum += x;
        self.count += 1;
    }

    fn write(&self, out: &mut String, name: &str) {
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            let _ = writeln!(out, "{name}_bucket{{le=\"{b}\"}} {c}");
        }
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum {}", self.sum);
        let _ = writeln!(out, "{name}_count {}", self.count);
    }
}

#[derive(Debug)]
struct Inner {
    requests: BTreeMap<(String, u16), u64>,
    errors: BTreeMap<&'static str, u64>,
    ttft: Histogram,
    token: Histogram,
    visual: Histogram,
    visual_total: u64,
    prompt_tokens: u64,
    completion_tokens: u64,
    completions: BTreeMap<String, u64>,
    decode_steps: u64,
    decode_rows: u64,
    max_decode_rows: u64,
}

/// The server's metrics.
#[derive(Debug)]
pub struct Metrics {
    inner: Mutex<Inner>,
    queue_depth: AtomicI64,
    running: AtomicI64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                requests: BTreeMap::new(),
                errors: BTreeMap::new(),
                ttft: Histogram::new(&TTFT_BUCKETS),
                token: Histogram::new(&TOKEN_BUCKETS),
                visual: Histogram::new(&V_BUCKETS),
                visual_total: 0,
                prompt_tokens: 0,
                completion_tokens: 0,
                completions: BTreeMap::new(),
                decode_steps: 0,
                decode_rows: 0,
                max_decode_rows: 0,
            }),
            queue_depth: AtomicI64::new(0),
            running: AtomicI64::new(0),
        }
    }
}

impl Metrics {
    fn with<R>(&self, f: impl FnOnce(&mut Inner) -> R) -> R {
        // A poisoned lock only means a panic elsewhere while counting: the counts are still usable.
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }

    /// One HTTP request answered on `path` with `status`.
    pub fn request(&self, path: &str, status: u16) {
        self.with(|m| *m.requests.entry((path.to_string(), status)).or_default() += 1);
    }

    /// One error response of `code`.
    pub fn error(&self, code: &'static str) {
        self.with(|m| *m.errors.entry(code).or_default() += 1);
    }

    /// A job entered the queue.
    pub fn enqueued(&self) {
        self.queue_depth.fetch_add(1, Ordering::Relaxed);
    }

    /// A job left the queue (taken by the worker or refused).
    pub fn dequeued(&self) {
        self.queue_depth.fetch_sub(1, Ordering::Relaxed);
    }

    /// Jobs waiting now.
    pub fn queue_depth(&self) -> i64 {
        self.queue_depth.load(Ordering::Relaxed)
    }

    /// The worker started (+1) or finished (−1) a job.
    pub fn running(&self, delta: i64) {
        self.running.fetch_add(delta, Ordering::Relaxed);
    }

    /// One batched decode step of `rows` sequences (continuous batching).
    pub fn decode_step(&self, rows: usize) {
        self.with(|m| {
            m.decode_steps += 1;
            m.decode_rows += rows as u64;
            m.max_decode_rows = m.max_decode_rows.max(rows as u64);
        });
    }

    /// Time to first token (request arrival to first token), seconds.
    pub fn ttft(&self, s: f64) {
        self.with(|m| m.ttft.observe(s));
    }

    /// One decode step's latency, seconds.
    pub fn token_latency(&self, s: f64) {
        self.with(|m| m.token.observe(s));
    }

    /// A completed generation: its model, V, prompt and completion tokens.
    pub fn completion(&self, model: &str, visual_tokens: usize, prompt_tokens: usize, completion_tokens: usize) {
        self.with(|m| {
            m.visual.observe(visual_tokens as f64);
            m.visual_total += visual_tokens as u64;
            m.prompt_tokens += prompt_tokens as u64;
            m.completion_tokens += completion_tokens as u64;
            *m.completions.entry(model.to_string()).or_default() += 1;
        });
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let depth = self.queue_depth();
        let running = self.running.load(Ordering::Relaxed);
        self.with(|m| {
            out.push_str("# HELP vlmscale_requests_total HTTP requests answered, by path and status.\n");
            out.push_str("# TYPE vlmscale_requests_total counter\n");
            for ((path, status), n) in &m.requests {
                let _ = writeln!(out, "vlmscale_requests_total{{path=\"{path}\",status=\"{status}\"}} {n}");
            }
            out.push_str("# HELP vlmscale_errors_total Error responses, by kind (the error object's code).\n");
            out.push_str("# TYPE vlmscale_errors_total counter\n");
            for (code, n) in &m.errors {
                let _ = writeln!(out, "vlmscale_errors_total{{kind=\"{code}\"}} {n}");
            }
            out.push_str("# HELP vlmscale_completions_total Generations finished, by model.\n");
            out.push_str("# TYPE vlmscale_completions_total counter\n");
            for (model, n) in &m.completions {
                let _ = writeln!(out, "vlmscale_completions_total{{model=\"{model}\"}} {n}");
            }
            out.push_str("# HELP vlmscale_queue_depth Requests waiting for the generation worker.\n");
            out.push_str("# TYPE vlmscale_queue_depth gauge\n");
            let _ = writeln!(out, "vlmscale_queue_depth {depth}");
            out.push_str("# HELP vlmscale_running Requests being generated.\n");
            out.push_str("# TYPE vlmscale_running gauge\n");
            let _ = writeln!(out, "vlmscale_running {running}");
            out.push_str("# HELP vlmscale_ttft_seconds Time from request arrival to the first token.\n");
            out.push_str("# TYPE vlmscale_ttft_seconds histogram\n");
            m.ttft.write(&mut out, "vlmscale_ttft_seconds");
            out.push_str("# HELP vlmscale_token_latency_seconds Latency of one decode step (time per output token).\n");
            out.push_str("# TYPE vlmscale_token_latency_seconds histogram\n");
            m.token.write(&mut out, "vlmscale_token_latency_seconds");
            out.push_str("# HELP vlmscale_visual_tokens Visual tokens V used per generation.\n");
            out.push_str("# TYPE vlmscale_visual_tokens histogram\n");
            m.visual.write(&mut out, "vlmscale_visual_tokens");
            out.push_str("# HELP vlmscale_visual_tokens_total Visual tokens used, summed over generations.\n");
            out.push_str("# TYPE vlmscale_visual_tokens_total counter\n");
            let _ = writeln!(out, "vlmscale_visual_tokens_total {}", m.visual_total);
            out.push_str("# HELP vlmscale_prompt_tokens_total LLM input tokens Q + V, summed.\n");
            out.push_str("# TYPE vlmscale_prompt_tokens_total counter\n");
            let _ = writeln!(out, "vlmscale_prompt_tokens_total {}", m.prompt_tokens);
            out.push_str("# HELP vlmscale_completion_tokens_total Generated tokens, summed.\n");
            out.push_str("# TYPE vlmscale_completion_tokens_total counter\n");
            let _ = writeln!(out, "vlmscale_completion_tokens_total {}", m.completion_tokens);
            out.push_str("# HELP vlmscale_decode_steps_total Batched decode steps (one weight read each).\n");
            out.push_str("# TYPE vlmscale_decode_steps_total counter\n");
            let _ = writeln!(out, "vlmscale_decode_steps_total {}", m.decode_steps);
            out.push_str("# HELP vlmscale_decode_rows_total Sequences decoded, summed over batched steps (÷ steps = mean batch).\n");
            out.push_str("# TYPE vlmscale_decode_rows_total counter\n");
            let _ = writeln!(out, "vlmscale_decode_rows_total {}", m.decode_rows);
            out.push_str("# HELP vlmscale_decode_batch_max Most sequences decoded in one step.\n");
            out.push_str("# TYPE vlmscale_decode_batch_max gauge\n");
            let _ = writeln!(out, "vlmscale_decode_batch_max {}", m.max_decode_rows);
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let m = Metrics::default();
        m.ttft(0.02);
        m.ttft(0.2);
        m.ttft(1000.0);
        let text = m.render();
        assert!(text.contains("vlmscale_ttft_seconds_bucket{le=\"0.025\"} 1\n"), "{text}");
        assert!(text.contains("vlmscale_ttft_seconds_bucket{le=\"0.25\"} 2\n"));
        assert!(text.contains("vlmscale_ttft_seconds_bucket{le=\"120\"} 2\n"));
        assert!(text.contains("vlmscale_ttft_seconds_bucket{le=\"+Inf\"} 3\n"));
        assert!(text.contains("vlmscale_ttft_seconds_count 3\n"));
    }
}

#![warn(missing_docs)]
//! `vlmscale serve`: an OpenAI-compatible HTTP server (axum on tokio) for LLaVA-style VLMs, where
//! each request may choose its visual-token count V (`"visual_tokens"`, `"token_reduction"`) or give a
//! budget (`"budget": {"ttft_ms" | "flops"}`) from which the fitted scaling law picks (model, V).
//! User documentation: `docs/serving.md`.
//!
//! Layout: [`api`] (wire types), [`chat`] (the completions endpoint), [`media`] (images and their
//! limits), [`reduction`] (the seam where V and the reduction method are decided and applied),
//! [`budget`] (the frontier's choice for a budget), [`worker`] (the generation thread and its queue),
//! [`metrics`] (Prometheus text), [`error`] (OpenAI-style errors).
//!
//! Concurrency: tokio serves HTTP; one OS thread ([`worker::run`]) owns the models and generates up
//! to [`worker::MAX_RUNNING`] requests, their decode steps batched (continuous batching), fed by a
//! bounded queue (429 with `Retry-After` when full). Connections must send a request's header within
//! [`ServeConfig::header_timeout`]. On the shutdown
//! signal the server answers new requests with 503, lets in-flight ones finish (up to a grace
//! period), then stops.
pub mod api;
pub mod budget;
mod chat;
pub mod error;
pub mod media;
pub mod metrics;
pub mod reduction;
pub mod worker;

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

pub use budget::Planner;
pub use error::{ApiError, ServeError};
pub use media::MediaPolicy;
use metrics::Metrics;
use worker::{Gate, Job, ModelInfo};

/// Everything `vlmscale serve` is started with.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Checkpoint directories; each model's id is its directory's name.
    pub models: Vec<PathBuf>,
    /// Matrix weights in bf16 with f32 activations.
    pub bf16: bool,
    /// Bearer token required on `/v1/*` (`--api-key`).
    pub api_key: Option<String>,
    /// The law and cost models for `budget` requests; `None` refuses them.
    pub planner: Option<Planner>,
    /// Image limits and the local media directory.
    pub media: MediaPolicy,
    /// Request body bytes, at most.
    pub max_body_bytes: usize,
    /// Requests waiting for the worker, at most (more get 429).
    pub queue_capacity: usize,
    /// A request must finish within this from its arrival (else 504, or an error event when
    /// streaming).
    pub request_timeout: Duration,
    /// After the shutdown signal, how long in-flight requests may take to finish; those still running
    /// then are cut.
    pub shutdown_grace: Duration,
    /// `max_tokens` when a request gives none.
    pub default_max_tokens: usize,
    /// Start with the worker held until [`Server::release_worker`] (tests use it to fix what is
    /// queued and in flight at a given moment).
    pub hold_worker: bool,
    /// A connection must deliver a request's complete header within this, else it is closed
    /// (slow-header clients, "slowloris", cannot hold connections open).
    pub header_timeout: Duration,
    /// Open connections at most; further clients wait in the listen backlog.
    pub max_connections: usize,
}

impl ServeConfig {
    /// The defaults for `models`.
    pub fn new(models: Vec<PathBuf>) -> Self {
        Self {
            models,
            bf16: false,
            api_key: None,
            planner: None,
            media: MediaPolicy::default(),
            max_body_bytes: 32 << 20,
            queue_capacity: 64,
            request_timeout: Duration::from_secs(600),
            shutdown_grace: Duration::from_secs(30),
            default_max_tokens: 256,
            hold_worker: false,
            header_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

/// Shared by the handlers.
pub(crate) struct AppState {
    pub(crate) models: Vec<ModelInfo>,
    pub(crate) queue: Mutex<Option<SyncSender<Job>>>,
    pub(crate) queue_capacity: usize,
    pub(crate) metrics: Arc<Metrics>,
    api_key: Option<String>,
    pub(crate) planner: Option<Planner>,
    pub(crate) media: MediaPolicy,
    pub(crate) max_body_bytes: usize,
    pub(crate) timeout: Duration,
    pub(crate) default_max_tokens: usize,
    draining: AtomicBool,
    pub(crate) in_flight: AtomicUsize,
    pub(crate) started: u64,
    pub(crate) next_id: AtomicU64,
    /// Image decodes running at once, at most [`DECODE_SLOTS`].
    pub(crate) decode_slots: tokio::sync::Semaphore,
}

/// Images decoded concurrently, at most (each may take up to `max_pixels` × 8 bytes).
pub const DECODE_SLOTS: usize = 2;

/// A loaded server: models in memory, worker thread running; [`Server::serve`] answers HTTP.
pub struct Server {
    state: Arc<AppState>,
    worker: std::thread::JoinHandle<()>,
    gate: Arc<Gate>,
    grace: Duration,
    header_timeout: Duration,
    max_connections: usize,
}

impl Server {
    /// Loads every model (blocking: call before or outside the async runtime's threads) and starts
    /// the worker. Errors: [`ServeError::Load`] for a checkpoint that does not load,
    /// [`ServeError::Config`] for no model, a duplicate id, or a local media directory that does
    /// not exist.
    pub fn new(mut config: ServeConfig) -> Result<Self, ServeError> {
        if config.models.is_empty() {
            return Err(ServeError::Config("give at least one --model DIR".into()));
        }
        if let Some(dir) = &config.media.allowed_local_dir {
            let canonical = dir
                .canonicalize()
                .map_err(|e| ServeError::Config(format!("--allowed-local-media-path {}: {e}", dir.display())))?;
            if !canonical.is_dir() {
                return Err(ServeError::Config(format!(
                    "--allowed-local-media-path {}: not a directory",
                    dir.display()
                )));
            }
            config.media.allowed_local_dir = Some(canonical);
        }
        let mut infos = vec![];
        let mut vlms = vec![];
        let mut seen = HashSet::new();
        for dir in &config.models {
            let id = dir
                .canonicalize()
                .ok()
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| dir.display().to_string());
            if !seen.insert(id.clone()) {
                return Err(ServeError::Config(format!(
                    "two --model directories are both named `{id}`: model ids are directory names and must differ"
                )));
            }
            let (info, vlm) = worker::load_model(id, dir.clone(), config.bf16)?;
            tracing::info!(model = %info.id, v = info.native.visual_tokens, "loaded");
            infos.push(info);
            vlms.push(vlm);
        }
        let (tx, rx) = std::sync::mpsc::sync_channel(config.queue_capacity.max(1));
        let metrics = Arc::new(Metrics::default());
        let gate = Arc::new(Gate::new(config.hold_worker));
        let names = infos.iter().map(|m| m.id.clone()).collect();
        let worker = {
            let (metrics, gate) = (metrics.clone(), gate.clone());
            std::thread::Builder::new()
                .name("vlmscale-generate".into())
                .spawn(move || worker::run(vlms, names, rx, metrics, gate))?
        };
        let state = Arc::new(AppState {
            models: infos,
            queue: Mutex::new(Some(tx)),
            queue_capacity: config.queue_capacity.max(1),
            metrics,
            api_key: config.api_key.filter(|k| !k.is_empty()),
            planner: config.planner,
            media: config.media,
            max_body_bytes: config.max_body_bytes,
            timeout: config.request_timeout,
            default_max_tokens: config.default_max_tokens.max(1),
            draining: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            started: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            next_id: AtomicU64::new(0),
            decode_slots: tokio::sync::Semaphore::new(DECODE_SLOTS),
        });
        Ok(Self {
            state,
            worker,
            gate,
            grace: config.shutdown_grace,
            header_timeout: config.header_timeout,
            max_connections: config.max_connections.max(1),
        })
    }

    /// Ids of the served models.
    pub fn model_ids(&self) -> Vec<String> {
        self.state.models.iter().map(|m| m.id.clone()).collect()
    }

    /// Lets a worker started with [`ServeConfig::hold_worker`] take jobs.
    pub fn release_worker(&self) {
        self.gate.release();
    }

    /// A handle that releases the worker later (see [`ServeConfig::hold_worker`]).
    pub fn worker_release_handle(&self) -> impl Fn() + Send + Sync + 'static {
        let gate = self.gate.clone();
        move || gate.release()
    }

    /// The routes.
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Serves on `listener` until `shutdown` resolves; then new requests get 503 while in-flight
    /// ones finish (up to the grace period), and the server stops and joins the worker.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        let Server { state, worker, gate, grace, header_timeout, max_connections } = self;
        let app = router(state.clone());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (force_tx, force_rx) = tokio::sync::oneshot::channel::<()>();
        let drain_state = state.clone();
        tokio::spawn(async move {
            shutdown.await;
            drain_state.draining.store(true, Ordering::SeqCst);
            tracing::info!("shutting down: new requests get 503, waiting for in-flight ones");
            let t0 = Instant::now();
            while drain_state.in_flight.load(Ordering::SeqCst) > 0 && t0.elapsed() < grace {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = stop_tx.send(());
            // Graceful shutdown closes idle connections at once; requests still running after the
            // grace period are cut (their jobs are cancelled at the next token).
            tokio::time::sleep(Duration::from_secs(1)).await;
            let _ = force_tx.send(());
        });
        let graceful = async {
            // HTTP/1 connections with a header-read timeout, at most `max_connections` at once; on
            // the stop signal the listener closes and open connections end after their request.
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
            let watcher = hyper_util::server::graceful::GracefulShutdown::new();
            let slots = Arc::new(tokio::sync::Semaphore::new(max_connections));
            let mut stop_rx = stop_rx;
            loop {
                let permit = tokio::select! {
                    p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
                    _ = &mut stop_rx => break,
                };
                let stream = tokio::select! {
                    r = listener.accept() => match r {
                        Ok((stream, _)) => stream,
                        Err(e) => {
                            // Out of file descriptors and the like: wait instead of spinning.
                            tracing::warn!("accept failed: {e}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    _ = &mut stop_rx => break,
                };
                let service = hyper_util::service::TowerToHyperService::new(app.clone());
                let conn = watcher.watch(http.serve_connection(hyper_util::rt::TokioIo::new(stream), service));
                tokio::spawn(async move {
                    let _ = conn.await;
                    drop(permit);
                });
            }
            drop(listener);
            watcher.shutdown().await;
            Ok::<(), std::io::Error>(())
        };
        let served = tokio::select! {
            r = graceful => r,
            _ = force_rx => {
                tracing::warn!("shutdown grace period over: cutting the requests still running");
                gate.cut_all();
                Ok(())
            }
        };
        // Close the queue (the worker ends after its current job), let a held worker run out.
        state.queue.lock().unwrap_or_else(|p| p.into_inner()).take();
        gate.release();
        drop(state);
        let _ = tokio::task::spawn_blocking(move || worker.join()).await;
        served.map_err(ServeError::Io)
    }
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Binds `addr` and serves until SIGTERM / Ctrl-C (the CLI's entry point). `on_ready` gets the
/// bound address.
pub fn run_blocking(
    config: ServeConfig,
    addr: SocketAddr,
    on_ready: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    let server = Server::new(config)?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        on_ready(listener.local_addr()?);
        server.serve(listener, shutdown_signal()).await
    })
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .route("/v1/models", get(list_models))
        .route("/v1/chat/completions", post(chat::chat_completions))
        .fallback(|| async { ApiError::not_found("not_found", "unknown path") })
        .method_not_allowed_fallback(|| async { ApiError::method_not_allowed() })
        .layer(DefaultBodyLimit::max(state.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(state.clone(), admission))
        .with_state(state)
}

/// Constant-time comparison of the bearer token.
fn token_matches(given: &[u8], want: &[u8]) -> bool {
    given.len() == want.len() && given.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

/// Draining (503), authentication (401), declared body size (413); then per-path and per-error
/// counts for `/metrics`.
async fn admission(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let label = match path.as_str() {
        "/" | "/health" | "/metrics" | "/v1/models" | "/v1/chat/completions" => path.as_str(),
        _ => "other",
    };
    let resp = if state.draining.load(Ordering::SeqCst) && path != "/health" && path != "/metrics" {
        ApiError::shutting_down().into_response()
    } else if path.starts_with("/v1/") && !authorized(&state, &req) {
        ApiError::unauthorized().into_response()
    } else if let Err(e) = chat::check_content_length(req.headers(), state.max_body_bytes) {
        e.into_response()
    } else {
        next.run(req).await
    };
    state.metrics.request(label, resp.status().as_u16());
    if let Some(error::ErrorCode(code)) = resp.extensions().get::<error::ErrorCode>() {
        state.metrics.error(code);
    }
    resp
}

fn authorized(state: &AppState, req: &Request) -> bool {
    let Some(key) = &state.api_key else { return true };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    given.is_some_and(|g| token_matches(g.as_bytes(), key.as_bytes()))
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    if state.draining.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({"status": "shutting_down"}))).into_response();
    }
    Json(json!({
        "status": "ok",
        "models": state.models.len(),
        "queue_depth": state.metrics.queue_depth(),
        "in_flight": state.in_flight.load(Ordering::SeqCst),
    }))
    .into_response()
}

async fn metrics_text(State(state): State<Arc<AppState>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render()).into_response()
}

async fn list_models(State(state): State<Arc<AppState>>) -> Response {
    let data: Vec<_> = state
        .models
        .iter()
        .map(|m| {
            let reductions: Vec<_> = if m.native.reducible() {
                models::reduction::ReductionMethod::ALL
                    .iter()
                    .map(|&r| {
                        json!({"token_reduction": r.name(), "visual_tokens": reduction::method_options(r, m.native.grid)})
                    })
                    .collect()
            } else {
                vec![]
            };
            json!({
                "id": m.id,
                "object": "model",
                "created": state.started,
                "owned_by": "vlmscale",
                "vlmscale": {
                    "llm_params": m.llm_params,
                    "architecture": m.architecture,
                    "context": m.context,
                    "visual_tokens": m.native.visual_tokens,
                    "compressor": m.native.compressor,
                    "grid": m.native.grid,
                    "token_reductions": reductions,
                },
            })
        })
        .collect();
    let law = state.planner.as_ref().map(
        |p| json!({"law": p.law, "token_axis": p.axis, "origin": p.origin, "latency_profile": p.latency.is_some()}),
    );
    Json(json!({"object": "list", "data": data, "vlmscale": {"budget": law}})).into_response()
}

async fn index() -> Html<&'static str> {
    Html(include_str!("index.html"))
}

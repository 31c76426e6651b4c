//! `vlmscale serve`: the OpenAI-compatible VLM server (the `serve` crate; user docs in
//! `docs/serving.md`). Parses flags, resolves the scaling law the way `frontier` does, and runs.
use super::law_source::LawArgs;
use anyhow::Result;
use scaling::cost::latency::LatencyProfile;
use serve::{MediaPolicy, Planner, ServeConfig};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// Serve LLaVA-layout checkpoints over an OpenAI-compatible HTTP API (`POST /v1/chat/completions`,
/// `GET /v1/models`, `/health`, `/metrics`, and a page at `/`). Each request may set
/// `"visual_tokens": V` (with `"token_reduction"`), or a `"budget": {"ttft_ms" | "flops"}` for which
/// the fitted law picks (model, V). Stops on SIGTERM / Ctrl-C: new requests get 503, in-flight ones
/// finish.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// LLaVA-layout checkpoint directory (repeat for several models; the id is the directory name).
    #[arg(long, value_name = "DIR", required = true)]
    pub model: Vec<PathBuf>,
    /// Address to listen on (loopback by default).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port (0: any free port; the bound address is printed).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Matrix weights: f32, or bf16 with f32 activations.
    #[arg(long, value_enum, default_value_t = super::generate::Weights::F32)]
    pub weights: super::generate::Weights,
    /// Require `Authorization: Bearer KEY` on /v1/* (default: the VLMSCALE_API_KEY environment
    /// variable, if set, which keeps the key out of the process list).
    #[arg(long)]
    pub api_key: Option<String>,
    /// Measured latency profile (`vlmscale bench infer --profile`): enables `"budget": {"ttft_ms": …}`.
    #[arg(long, value_name = "PROFILE.json")]
    pub latency_profile: Option<PathBuf>,
    #[command(flatten)]
    pub law: LawArgs,
    /// Allow `file://` image URLs under this directory (canonicalised; nothing outside it).
    #[arg(long, value_name = "DIR")]
    pub allowed_local_media_path: Option<PathBuf>,
    /// Request body limit, bytes.
    #[arg(long, default_value_t = 32 << 20)]
    pub max_body_bytes: usize,
    /// Encoded image limit, bytes.
    #[arg(long, default_value_t = 20 << 20)]
    pub max_image_bytes: usize,
    /// Decoded image limit, pixels (width × height, read from the header before decoding).
    #[arg(long, default_value_t = 8192 * 8192)]
    pub max_image_pixels: u64,
    /// Requests waiting for the generation worker, at most (more get 429).
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Per-request timeout, seconds, from arrival (queueing included).
    #[arg(long, default_value_t = 600.0)]
    pub request_timeout: f64,
    /// After SIGTERM, seconds in-flight requests may take to finish.
    #[arg(long, default_value_t = 30.0)]
    pub shutdown_grace: f64,
    /// Seconds a connection has to send a request's complete header before it is closed (slow
    /// clients cannot hold connections open).
    #[arg(long, default_value_t = 10.0)]
    pub header_timeout: f64,
    /// Open connections at most; more clients wait in the listen backlog.
    #[arg(long, default_value_t = 512)]
    pub max_connections: usize,
    /// max_tokens of a request that gives none.
    #[arg(long, default_value_t = 256)]
    pub default_max_tokens: usize,
}

fn seconds(flag: &str, s: f64) -> Result<Duration> {
    Duration::try_from_secs_f64(s)
        .map_err(|_| super::UsageError(format!("{flag}: expected seconds ≥ 0, got {s}")).into())
}

pub fn run(a: Args) -> Result<()> {
    super::prepare_inference();
    let law = a.law.resolve()?;
    let latency = a.latency_profile.as_deref().map(LatencyProfile::from_file).transpose()?;
    let planner = Planner { law: law.law, axis: law.axis, origin: law.origin, latency };
    let config = ServeConfig {
        bf16: a.weights == super::generate::Weights::Bf16,
        api_key: a.api_key.or_else(|| std::env::var("VLMSCALE_API_KEY").ok()),
        planner: Some(planner),
        media: MediaPolicy {
            max_image_bytes: a.max_image_bytes,
            max_pixels: a.max_image_pixels,
            allowed_local_dir: a.allowed_local_media_path,
            ..MediaPolicy::default()
        },
        max_body_bytes: a.max_body_bytes,
        queue_capacity: a.queue,
        request_timeout: seconds("--request-timeout", a.request_timeout)?,
        shutdown_grace: seconds("--shutdown-grace", a.shutdown_grace)?,
        header_timeout: seconds("--header-timeout", a.header_timeout)?,
        max_connections: match a.max_connections {
            0 => return Err(super::UsageError("--max-connections must be at least 1".into()).into()),
            n => n,
        },
        default_max_tokens: a.default_max_tokens,
        ..ServeConfig::new(a.model)
    };
    serve::run_blocking(config, SocketAddr::new(a.host, a.port), |addr| {
        println!("vlmscale serve: listening on http://{addr} (POST /v1/chat/completions; GET /v1/models, /health, /metrics, /)");
    })?;
    println!("vlmscale serve: stopped");
    Ok(())
}

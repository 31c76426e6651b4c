//! `vlmscale bench …`: speed, with the peer's figure measured in the same run.
use anyhow::Result;
use scaling::fit::cells::Cells;
use scaling::fit::grid::{grid_search, GridSpec};
use scaling::law::{LawForm, TokenAxis};
use std::path::PathBuf;
use std::time::Instant;

use bench::machine::{load_average, measured_f64_limit, measured_matmul_gflops, measured_read_bandwidth};
use bench::peers::PeersDir;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(clap::Subcommand, Debug)]
pub enum Bench {
    /// The paper's full 5,000,000-point grid search on the 28 published cells, against the authors'
    /// Python loop (peers/grid_search_authors_loop.py, timed on a prefix of the grid).
    Fit(FitArgs),
    /// CLIP ViT-L/14-336 (random weights) through vlm's tower and each compressor, beside
    /// candle-transformers' ClipVisionTransformer on the same weights and (if Python with torch and
    /// transformers is installed) PyTorch's CLIPVisionModel.
    Vision(VisionArgs),
    /// One VLM query at real sizes with in-memory weights (CLIP ViT-L/14-336 + QueCC + mlp2x_gelu +
    /// a Qwen-1.5 shape) per V: vision, query embedding, compressor, projector, prefill, TTFT, decode
    /// ms/token, GFLOP/s; and candle-transformers' own Qwen2 on the same LLM weights in the same run.
    /// Timings on a shared CPU are noisy.
    Infer(InferArgs),
    /// Training throughput: full optimiser steps (forward, backward, clip, AdamW) of the VLM the
    /// `train` crate trains, per LLM size, on one fixed synthetic batch: s/step, samples/s, GFLOP/s
    /// against the measured f32 matmul limit; with --torch, the same model, weights and batch in
    /// PyTorch (peers/torch_train_peer.py) in the same run.
    Train(TrainArgs),
    /// The server under load over real HTTP on loopback: a random-weight LLaVA-1.5-layout checkpoint
    /// (CLIP ViT-L/14 + mlp2x_gelu + a Qwen-1.5 shape, bf16) served in process; (a) one streamed
    /// request: TTFT and decode tokens/s; (b) S concurrent streams: aggregate decode tokens/s and its
    /// ratio to (a); (c) C clients × N requests with mixed V (per-request token reduction) and
    /// streaming on/off: failures, p50/p99 TTFT, tokens/s. (a) and (b) also against llama.cpp's
    /// llama-server on the same LLM weights (GGUF BF16) if a binary is found.
    Serve(ServeArgs),
}

/// Where `bench`'s peer scripts are and which Python runs them (shared by its subcommands).
#[derive(clap::Args, Debug)]
pub struct PeerArgs {
    /// Python interpreter for the peer scripts (PyTorch, the GGUF conversions); `none` skips the
    /// PyTorch peers of `bench infer` and `bench vision`.
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// The folder with the peer scripts (`peers/` of the sources; default: found next to the binary,
    /// in its install prefix's `share/vlmscale/peers`, or in `./peers`).
    #[arg(long, value_name = "DIR")]
    pub peers_dir: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// LLM shape: 0.5b (Qwen1.5-0.5B), 1.8b (Qwen1.5-1.8B), or tiny (4 layers, 64 wide, with a
    /// 4-block 32-wide tower: a smoke test of the whole path in seconds).
    #[arg(long, default_value = "0.5b", value_parser = clap::builder::PossibleValuesParser::new(bench::serve::SIZES))]
    pub size: String,
    /// The vision tower's input resolution, pixels (a multiple of its patch, 14): native V =
    /// (PX / 14)²; the requests' images are noise PNGs of this size.
    #[arg(long, default_value_t = 336, value_name = "PX")]
    pub image_size: usize,
    /// Tokens generated per request in (a) and (b) (at least 2).
    #[arg(long, default_value_t = 64)]
    pub max_tokens: usize,
    /// Concurrent streams in (b) (llama-server gets --parallel this).
    #[arg(long, default_value_t = 4)]
    pub streams: usize,
    /// Timed repetitions of (a) and (b), for each server; the best is reported (highest decode
    /// tokens/s).
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Clients in (c).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Requests per client in (c), one after the other; 0 skips (c).
    #[arg(long, default_value_t = 50)]
    pub requests: usize,
    /// Tokens generated per request in (c).
    #[arg(long, default_value_t = 16)]
    pub load_max_tokens: usize,
    /// Threads of the model (RAYON_NUM_THREADS; CANDLE_NUM_THREADS too unless set) and of
    /// llama-server (-t, -tb). Default: RAYON_NUM_THREADS if set, else the CPU's cores.
    #[arg(long)]
    pub threads: Option<usize>,
    /// The llama-server binary; default: the llama.cpp peer's cache
    /// ($XDG_CACHE_HOME or ~/.cache, vlmscale/llama.cpp-*/build*/bin/llama-server, built by
    /// `python3 peers/llama_cpp_peer.py build`); `none` skips it.
    #[arg(long, value_name = "PATH")]
    pub llama_server: Option<PathBuf>,
    #[command(flatten)]
    pub peers: PeerArgs,
    /// Write the checkpoint, the GGUF and llama-server's log here (kept) instead of a temporary folder.
    #[arg(long, value_name = "DIR")]
    pub workdir: Option<PathBuf>,
    /// Also write the figures as JSON here.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// LLM size presets (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "xs,s,m,l", value_parser = super::llm_preset_parser())]
    pub llm: Vec<String>,
    /// Compressor.
    #[arg(long, default_value = "quecc", value_parser = super::trainable_compressor_parser())]
    pub compressor: String,
    /// V, visual tokens per image (1, 4, 16, 64 on the 8×8 grid).
    #[arg(long, default_value_t = 16)]
    pub visual_tokens: usize,
    /// Batch size (questions per step).
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Timed steps per size (after one warm-up step); the mean is reported.
    #[arg(long, default_value_t = 5)]
    pub steps: usize,
    /// Threads: the batch is split into this many parts trained data-parallel (one worker thread
    /// each, kernels single-threaded inside; `train::model::TrainableVlm::loss_and_grads`); also
    /// RAYON_NUM_THREADS. candle's element-wise pool stays single-threaded (CANDLE_NUM_THREADS=1
    /// unless set): it spin-waits and collapses on an oversubscribed machine. Default:
    /// RAYON_NUM_THREADS if set, else the CPU's cores.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also time the PyTorch peer on the identical model, weights and batch.
    #[arg(long)]
    pub torch: bool,
    /// torch.set_num_threads for the peer (default: the same as --threads).
    #[arg(long)]
    pub torch_threads: Option<usize>,
    /// Also write the rows (ours and the peer's) as JSON here.
    #[arg(long, value_name = "OUT.json")]
    pub json: Option<PathBuf>,
    #[command(flatten)]
    pub peers: PeerArgs,
}

#[derive(clap::Args, Debug)]
pub struct VisionArgs {
    /// V for the compressors.
    #[arg(long, default_value_t = 36)]
    pub visual_tokens: usize,
    /// Timed repetitions (best and mean reported).
    #[arg(long, default_value_t = 2)]
    pub repeats: usize,
    /// LLM width for QueCC's query (4096: Vicuna-7B).
    #[arg(long, default_value_t = 4096)]
    pub llm_hidden: usize,
    #[command(flatten)]
    pub peers: PeerArgs,
}

#[derive(clap::Args, Debug)]
pub struct InferArgs {
    /// LLM shape: 0.5b (Qwen1.5-0.5B), 1.8b (Qwen1.5-1.8B), or vicuna-7b (Vicuna-7B-v1.5, the LLM of
    /// LLaVA-1.5-7B; with --token-reduction and --weights bf16 only: its f32 weights, 27 GB, are
    /// never made).
    #[arg(long, value_enum, default_value_t = InferSize::Qwen15_0_5b)]
    pub size: InferSize,
    /// Visual-token counts V (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,36,64,144,576")]
    pub visual_tokens: Vec<usize>,
    /// Q, text tokens.
    #[arg(long, default_value_t = 50)]
    pub text_tokens: usize,
    /// Decode steps timed after each prefill.
    #[arg(long, default_value_t = 8)]
    pub decode_steps: usize,
    /// Timed repetitions (best reported).
    #[arg(long, default_value_t = 1)]
    pub repeats: usize,
    /// Weight formats to run, in order (comma-separated): f32 (the parity path), bf16 (matrix
    /// weights of the vision tower, compressors, projector and LLM in bf16, activations f32; the f32
    /// weights are dropped before it runs), q8_0 / q4_0 (GGML blocks for the parts of --quant-parts,
    /// the rest bf16). f32 must come first; each later format runs on newly created random weights.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "f32,bf16")]
    pub weights: Vec<super::generate::Weights>,
    /// The parts stored as q8_0 / q4_0 in those runs (comma-separated: llm, vision, compressor,
    /// projector, or all); default llm.
    #[arg(long, value_name = "PARTS")]
    pub quant_parts: Option<String>,
    /// Also run llama.cpp (peers/llama_cpp_peer.py: built once from the llama-cpp-python sdist into a
    /// cache outside the sources, which takes tens of minutes on 2 cores) on the same LLM weights as
    /// GGUF, in each of the bf16 / q8_0 / q4_0 formats of --weights: prefill at each Q + V and decode
    /// at depth 0 and at the largest Q + V (llama-bench). If it cannot be built, the bench says so.
    #[arg(long)]
    pub llama_cpp: bool,
    /// Skip the peers (candle-transformers in-process, PyTorch via peers/bench_infer_torch.py).
    #[arg(long)]
    pub no_peer: bool,
    /// Write the measured scaling::cost::latency::LatencyProfile here (for `frontier --latency-profile`);
    /// with several `--weights`, the LLM's rates of each format too, so `frontier` searches the format.
    #[arg(long, value_name = "OUT.json")]
    pub profile: Option<PathBuf>,
    #[command(flatten)]
    pub peers: PeerArgs,
    /// Time training-free token reductions on plain LLaVA-1.5 instead (comma-separated, e.g.
    /// `visionzip,cls-topk,fastv`): TTFT per method and V (`--visual-tokens`) and its speed-up over all
    /// 576 tokens, timed once for all of them on the same weights (docs/token-reduction.md). No peers,
    /// no decode. `trained` (alone) is the ordinary bench.
    #[arg(long, value_enum, value_name = "METHOD", value_delimiter = ',')]
    pub token_reduction: Vec<eval::reduction::TokenReduction>,
    /// FastV's layer K (with `--token-reduction fastv`).
    #[arg(long, value_name = "K", default_value_t = models::reduction::DEFAULT_FASTV_LAYER)]
    pub fastv_layer: usize,
}

/// The LLM shapes `bench infer` builds.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum InferSize {
    /// Qwen1.5-0.5B.
    #[value(name = "0.5b")]
    Qwen15_0_5b,
    /// Qwen1.5-1.8B.
    #[value(name = "1.8b")]
    Qwen15_1_8b,
    /// Vicuna-7B-v1.5 (Llama; LLaVA-1.5-7B's LLM).
    #[value(name = "vicuna-7b")]
    Vicuna7b,
}

impl InferSize {
    /// The name `bench::infer::llm_config` takes.
    pub fn name(self) -> &'static str {
        match self {
            InferSize::Qwen15_0_5b => "0.5b",
            InferSize::Qwen15_1_8b => "1.8b",
            InferSize::Vicuna7b => "vicuna-7b",
        }
    }

    /// How the shape is named in output: `Qwen1.5-0.5B`, `Qwen1.5-1.8B`, `Vicuna-7B`.
    pub fn label(self) -> &'static str {
        match self {
            InferSize::Qwen15_0_5b => "Qwen1.5-0.5B",
            InferSize::Qwen15_1_8b => "Qwen1.5-1.8B",
            InferSize::Vicuna7b => "Vicuna-7B",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct FitArgs {
    /// Timed repetitions of the full grid (median reported).
    #[arg(long, default_value_t = 7)]
    pub repeats: usize,
    /// Grid points the Python peer evaluates (its rate is extrapolated to the full grid).
    #[arg(long, default_value_t = 20000)]
    pub peer_points: usize,
    #[command(flatten)]
    pub peers: PeerArgs,
}

pub fn run(b: Bench) -> Result<()> {
    match b {
        Bench::Fit(a) => fit(a),
        Bench::Vision(a) => vision(a),
        Bench::Infer(a) => infer(a),
        Bench::Train(a) => train(a),
        Bench::Serve(a) => serve_bench(a),
    }
}

/// Arithmetic the grid search actually performs: per (α, β, A) one pass over the cells (multiply,
/// subtract, two accumulations, one square: 5 FLOPs a cell), then 4 FLOPs per D point.
fn grid_flops(spec: &GridSpec, cells: usize) -> f64 {
    let outer = (spec.alpha.len() * spec.beta.len() * spec.scale.len()) as f64;
    outer * (5.0 * cells as f64 + 4.0 * spec.offset.len() as f64)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn fit(a: FitArgs) -> Result<()> {
    let ds = scaling::paper::dataset()?.select(Some("reasoning"), None)?;
    let cells = Cells::from_dataset(&ds, TokenAxis::Visual);
    let spec = GridSpec::paper();
    let points = spec.points(LawForm::Multiplicative) as f64;
    let _ = grid_search(&cells, LawForm::Multiplicative, &spec); // warm-up
    let mut times = Vec::new();
    let mut best = None;
    for _ in 0..a.repeats.max(1) {
        let t0 = Instant::now();
        best = grid_search(&cells, LawForm::Multiplicative, &spec);
        times.push(t0.elapsed().as_secs_f64());
    }
    let t = median(times);
    let best = best.expect("non-empty grid");
    let ours = points / t;
    let gflops = grid_flops(&spec, cells.len()) / t / 1e9;
    let limit = measured_f64_limit() / 1e9;
    println!(
        "bench fit — the paper's grid: {points:.0} points × {} cells, {} threads",
        cells.len(),
        rayon::current_num_threads()
    );
    println!("  vlmscale: {t:.4} s per full grid (median of {}), {ours:.3e} points/s, {gflops:.2} GFLOP/s executed (measured f64 limit of this build: {limit:.2} GFLOP/s, {:.0} %)",
        a.repeats.max(1), 100.0 * gflops / limit);
    println!("            best: α = {:.4}, β = {:.4}, SSE = {:.4e}", best.law.alpha(), best.law.beta(), best.loss);

    let peers = match PeersDir::locate(a.peers.peers_dir.as_deref()) {
        Ok(p) => p,
        Err(e) if e.is_user_error() => return Err(super::UsageError(e.to_string()).into()),
        Err(e) => {
            println!("  authors' Python loop: NOT run: {e}");
            return Ok(());
        }
    };
    // The peer reads the same embedded scores from a file.
    let data = tempfile::Builder::new().prefix("vlmscale-reasoning-").suffix(".csv").tempfile()?;
    std::fs::write(data.path(), scaling::paper::REASONING_CSV)?;
    let points_arg = a.peer_points.to_string();
    let args = [data.path().as_os_str(), std::ffi::OsStr::new("--points"), std::ffi::OsStr::new(&points_arg)];
    let peer = peers.run(&a.peers.python, "grid_search_authors_loop.py", args);
    match peer {
        Ok(out) if out.status.success() => {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
            let rate = v["points_per_second"].as_f64().unwrap_or(f64::NAN);
            println!("  authors' Python loop: {rate:.3e} points/s ({} points in {:.2} s) → {:.0} s for the full grid, {:.1} min for the 20 % the authors search",
                v["points"], v["seconds"].as_f64().unwrap_or(f64::NAN), points / rate, 0.2 * points / rate / 60.0);
            println!(
                "  speed-up: {:.0}× the authors' loop (target ≥ 1000×; target time < 0.25 s: {})",
                ours / rate,
                if t < 0.25 { "met" } else { "NOT met" }
            );
        }
        Ok(out) => {
            println!("  authors' Python loop: failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim())
        }
        Err(e) => {
            println!("  authors' Python loop: could not run `{}` ({e}); install python3 with numpy", a.peers.python)
        }
    }
    Ok(())
}

fn vision(a: VisionArgs) -> Result<()> {
    super::prepare_inference();
    use bench::vision::VisionBench;
    use candle_core::Device;
    let peers = locate_peers(a.peers.peers_dir.as_deref(), &a.peers.python)?;
    let limit = measured_matmul_gflops()?;
    println!(
        "bench vision — CLIP ViT-L/14-336, random weights, one 336×336 image, f32, {} threads",
        rayon::current_num_threads()
    );
    println!(
        "measured f32 matmul limit ({:?} backend, 2048³): {limit:.1} GFLOP/s\n",
        kernels::matmul::matmul_backend()
    );
    let bench = VisionBench::new(a.llm_hidden, &Device::Cpu);
    // candle-transformers on the same weights (it reads the tower our modules created in the VarMap).
    let rows: Vec<_> =
        bench.run(a.visual_tokens, a.repeats)?.into_iter().chain(candle_vision_peer(&bench, a.repeats)?).collect();
    for r in &rows {
        println!("{r}   ({:.0} % of the matmul limit)", 100.0 * r.gflops_per_second() / limit);
    }
    #[cfg(not(feature = "peers"))]
    println!("{NO_CANDLE_PEER}");
    if let Some(peers) = &peers {
        // f32 (the reference) and bf16 (beside our bf16-weight row), one after the other.
        for dtype in ["float32", "bfloat16"] {
            match peers.run(&a.peers.python, "bench_vision_torch.py", [a.repeats.to_string().as_str(), dtype]) {
                Ok(out) if out.status.success() => print!("peer: {}", String::from_utf8_lossy(&out.stdout)),
                Ok(out) => println!(
                    "peer: PyTorch unavailable ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
                ),
                Err(e) => println!("peer: could not run `{}` ({e})", a.peers.python),
            }
        }
    }
    Ok(())
}

/// `bench infer --token-reduction METHOD[,METHOD…]`: one table per weight dtype.
fn infer_reduction(a: &InferArgs, methods: &[models::reduction::ReductionMethod]) -> Result<()> {
    use super::generate::Weights;
    use candle_core::DType;
    if a.size == InferSize::Vicuna7b && a.weights.iter().any(|w| *w != Weights::Bf16) {
        return Err(super::UsageError(
            "--size vicuna-7b runs with --weights bf16 only (its f32 weights, 27 GB, are never made)".into(),
        )
        .into());
    }
    let cfg = bench::infer::llm_config(a.size.name())?;
    for w in &a.weights {
        let dtype = if *w == Weights::Bf16 { DType::BF16 } else { DType::F32 };
        println!(
            "token reduction {}: LLaVA-1.5 (CLIP ViT-L/14-336, mlp2x_gelu) + {} shape (N = {:.3} B), {dtype:?} weights, Q = {} text tokens, best of {}, {} threads",
            methods.iter().map(|m| m.name()).collect::<Vec<_>>().join(", "),
            a.size.label(),
            cfg.num_parameters() as f64 / 1e9,
            a.text_tokens + 1,
            a.repeats,
            rayon::current_num_threads()
        );
        let run = bench::reduction::run(
            &cfg,
            methods,
            &a.visual_tokens,
            a.fastv_layer,
            a.text_tokens,
            a.repeats,
            dtype,
            |r| println!("{r}"),
        )?;
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        match run.peak_rss_bytes {
            Some(p) => println!(
                "memory: peak resident {:.2} GiB from weight creation on, weights {:.2} GiB ({:.2}×)",
                gib(p),
                gib(run.weight_bytes),
                p as f64 / run.weight_bytes as f64
            ),
            None => println!("memory: weights {:.2} GiB; peak resident set not available here", gib(run.weight_bytes)),
        }
    }
    Ok(())
}

fn infer(a: InferArgs) -> Result<()> {
    super::prepare_inference();
    use bench::infer::{latency_profile, qwen15_config, InferBench, InferRow};
    use candle_core::{DType, Device};
    let vs = a.visual_tokens.clone();
    if vs.contains(&0) {
        return Err(super::UsageError("--visual-tokens: 0 is not a positive integer".into()).into());
    }
    if a.text_tokens == 0 {
        return Err(super::UsageError("--text-tokens must be ≥ 1".into()).into());
    }
    let methods: Vec<_> = a.token_reduction.iter().filter_map(|r| r.method()).collect();
    if !methods.is_empty() {
        if methods.len() != a.token_reduction.len() {
            return Err(super::UsageError(
                "--token-reduction: `trained` is the ordinary bench and cannot be listed with training-free methods"
                    .into(),
            )
            .into());
        }
        return infer_reduction(&a, &methods);
    }
    if a.size == InferSize::Vicuna7b {
        return Err(super::UsageError(
            "--size vicuna-7b runs with --token-reduction only (the peers and the f32 run need its f32 weights, 27 GB)"
                .into(),
        )
        .into());
    }
    let allowed = models::compress::allowed_visual_tokens(24);
    if let Some(v) = vs.iter().find(|v| !allowed.contains(v)) {
        return Err(super::UsageError(format!(
            "--visual-tokens: V = {v} cannot be made from the 24×24 grid; allowed: {allowed:?}"
        ))
        .into());
    }
    use super::generate::Weights;
    use engine::model::{WeightFormat, WeightParts};
    if a.weights.iter().skip_while(|w| **w == Weights::F32).any(|w| *w == Weights::F32) {
        return Err(super::UsageError(
            "--weights: f32 must come first (the other formats drop the f32 weights)".into(),
        )
        .into());
    }
    let quantised = a.weights.iter().any(|w| matches!(w, Weights::Q8_0 | Weights::Q4_0));
    let parts = match &a.quant_parts {
        Some(p) if quantised => WeightParts::parse(p).map_err(|e| super::UsageError(format!("--quant-parts: {e}")))?,
        Some(_) => return Err(super::UsageError("--quant-parts applies to --weights q8_0 or q4_0".into()).into()),
        None => WeightParts::default(),
    };
    let formats: Vec<WeightFormat> = a.weights.iter().map(|w| w.format()).collect();
    let cfg = qwen15_config(a.size.name())?;
    let n = cfg.num_parameters();
    let dev = Device::Cpu;
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let limit = measured_matmul_gflops()?;
    let bandwidth = measured_read_bandwidth();
    println!(
        "bench infer: CLIP ViT-L/14-336 (23 blocks) + QueCC (none at V = 576) + mlp2x_gelu + Qwen1.5-{} shape (N = {:.3} B), CPU, {threads} threads; Q = {}, best of {}; {}; shared machine: timings are noisy",
        a.size.name(), n as f64 / 1e9, a.text_tokens, a.repeats, load_average()
    );
    println!(
        "measured f32 matmul limit ({:?} backend, 2048³): {limit:.1} GFLOP/s; measured read bandwidth {bandwidth:.1} GB/s; bf16 kernels: {:?}",
        kernels::matmul::matmul_backend(),
        kernels::matmul_bf16::bf16_kernels()
    );
    if quantised {
        let prefill = if quant::linear::uses_panels(4096, 4096, 4096) {
            format!("from {} rows: dequantised bf16 panels into the bf16 tile kernel", quant::linear::PANEL_MIN_ROWS)
        } else {
            format!(
                "from {} rows: dequantised f32 blocks into the gemm crate's f32 kernels",
                kernels::matmul_bf16::WIDEN_MIN_ROWS
            )
        };
        println!(
            "quantised kernels: {} (decode: int8 block dot products; prefill {prefill}); q8_0/q4_0 parts: {parts}, other parts bf16",
            quant::QuantPath::best(),
        );
        if let Some(note) = quant::fallback_note() {
            println!("{note}");
        }
    }
    let peers = if a.no_peer { None } else { locate_peers(a.peers.peers_dir.as_deref(), &a.peers.python)? };
    let bench = InferBench::new(cfg.clone(), &dev);
    // The llama.cpp peer runs after ours, on the LLM weights as they are now (exported before the
    // first conversion drops them).
    let llama = if a.llama_cpp { Some(prepare_llama_cpp_peer(&a, &bench)?) } else { None };
    let mut last_rows: Vec<InferRow> = vec![];
    let mut rows_by_format: Vec<(String, Vec<InferRow>)> = vec![];
    let mut peer_done = a.no_peer;
    for &fmt in &formats {
        let tag = format!("{:<4}", fmt.name());
        if fmt != WeightFormat::Dense(DType::F32) && !peer_done {
            candle_transformers_peer(&a, &bench, &vs)?;
            peer_done = true;
        }
        // A decode step reads every LLM weight once (a tied head once): N · bytes per weight (the
        // norms and biases, f32, are a negligible part); and the KV cache of the context (f32 K and V
        // per layer), here taken at the prompt's length Q + V.
        let weight_gb = n as f64 * fmt.bytes_per_weight() / 1e9;
        let kv_gb =
            |ctx: usize| (2 * cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim * 4 * ctx) as f64 / 1e9;
        let run = bench.run(&vs, a.text_tokens, a.decode_steps, a.repeats, fmt, parts, |r| {
            let kv = kv_gb(r.text_tokens + r.visual_tokens);
            let gbps = (weight_gb + kv) / (r.decode_ms_per_token / 1e3);
            println!(
                "vlm {tag} {r} ({:.0} % of the f32 limit); decode reads {:.0} MB weights + {:.0} MB KV cache per token: {gbps:.1} GB/s ({:.0} % of the read bandwidth)",
                100.0 * r.prefill_gflops_per_s / limit,
                weight_gb * 1e3,
                kv * 1e3,
                100.0 * gbps / bandwidth
            )
        })?;
        let rows = run.rows;
        if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
            let llm_ttft = |r: &InferRow| r.query_embedding_ms + r.prefill_ms;
            let (t, f) = (llm_ttft(last) / llm_ttft(first), last.llm_gflop / first.llm_gflop);
            println!(
                "vlm {tag} LLM-part TTFT(V = {})/TTFT(V = {}) = {t:.2}; FLOPs ratio {f:.2} ({:+.0} %)",
                last.visual_tokens,
                first.visual_tokens,
                100.0 * (t / f - 1.0)
            );
        }
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        match run.peak_rss_bytes {
            Some(p) => println!(
                "vlm {tag} memory: peak resident {:.2} GiB during the run, weights {:.2} GiB (LLM {:.2} GiB in {}; tower, compressors, projector: {}) → {:.2}× the weights",
                gib(p), gib(run.weight_bytes), gib(run.llm_weight_bytes), run.weight_format,
                if matches!(fmt, WeightFormat::Quant(_)) { format!("bf16 unless in the {fmt} parts ({parts})") } else { fmt.name() },
                p as f64 / run.weight_bytes as f64
            ),
            None => println!("vlm {tag} memory: weights {:.2} GiB; peak resident set not available here", gib(run.weight_bytes)),
        }
        rows_by_format.push((fmt.name(), rows.clone()));
        last_rows = rows;
    }
    if !peer_done {
        candle_transformers_peer(&a, &bench, &vs)?;
    }
    if let Some(peers) = &peers {
        for fmt in &formats {
            match fmt {
                WeightFormat::Dense(DType::F32) => pytorch_infer_peer(&a, peers, &vs, "float32"),
                WeightFormat::Dense(DType::BF16) => pytorch_infer_peer(&a, peers, &vs, "bfloat16"),
                _ => {}
            }
        }
    }
    if let Some(dir) = &llama {
        llama_cpp_peer(&a, dir.path(), &formats, &vs, threads);
    }
    println!("after the run: {}", load_average());
    if let Some(p) = &a.profile {
        let machine = format!("{threads} threads, candle CPU; vlmscale bench infer --size {}", a.size.name());
        let mut prof = latency_profile(&last_rows, n, &machine)?;
        if rows_by_format.len() > 1 {
            for (weights, rows) in &rows_by_format {
                let p = latency_profile(rows, n, &machine)?;
                prof.formats.push(scaling::cost::latency::FormatRates {
                    weights: weights.clone(),
                    prefill_ms_per_token_per_billion: p.prefill_ms_per_token_per_billion,
                    decode_ms_per_token_per_billion: p.decode_ms_per_token_per_billion,
                });
            }
        }
        prof.write(p)?;
        println!("latency profile written to {}: {}", p.display(), serde_json::to_string(&prof)?);
    }
    Ok(())
}

/// The PyTorch peer's timing of one exported case (one JSON line of `torch_train_peer.py time`).
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
struct PeerRow {
    step0_loss: f64,
    step_s: f64,
    threads: usize,
    torch: String,
}

fn train(a: TrainArgs) -> Result<()> {
    use bench::train::{bench_train, BenchConfig};
    let sizes: Vec<&str> = a.llm.iter().map(String::as_str).collect();
    if sizes.is_empty() {
        return Err(super::UsageError("--llm: give at least one size (xs, s, m, l)".into()).into());
    }
    if a.steps == 0 || a.batch == 0 {
        return Err(super::UsageError("--steps and --batch must be ≥ 1".into()).into());
    }
    let threads = match a.threads {
        Some(0) => return Err(super::UsageError("--threads must be ≥ 1".into()).into()),
        Some(n) => n,
        None => std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
    };
    // Before any tensor op: candle reads these when its thread pools start.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    if std::env::var("CANDLE_NUM_THREADS").is_err() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
    let torch_threads = a.torch_threads.unwrap_or(threads);
    let cfg = BenchConfig {
        compressor: a.compressor.clone(),
        visual_tokens: a.visual_tokens,
        batch_size: a.batch,
        threads,
        ..BenchConfig::default()
    };
    bench::train::BenchInput::new(&cfg)?; // bad compressor / V: error before the slow part
    let load = load_average();
    println!(
        "bench train — {} + mlp2x_gelu + Qwen2 LLM, V = {}, batch {}, d = {}, {}×{} grid, f32, CPU; {threads} data-parallel thread{} (RAYON_NUM_THREADS), candle element-wise threads {} (CANDLE_NUM_THREADS); {load}; shared machine: timings are noisy",
        a.compressor, a.visual_tokens, a.batch, cfg.vision_dim, cfg.grid, cfg.grid,
        if threads == 1 { "" } else { "s" },
        std::env::var("CANDLE_NUM_THREADS").unwrap_or_default()
    );
    let limit = measured_matmul_gflops()?;
    println!(
        "measured f32 matmul limit ({:?} backend, 2048³, {threads} thread{}): {limit:.1} GFLOP/s",
        kernels::matmul::matmul_backend(),
        if threads == 1 { "" } else { "s" }
    );
    println!("FLOPs: exact forward matrix-product count × 3 (forward + backward) + the query embedding's forward; element-wise work not counted\n");

    let export = if a.torch { Some(tempfile::Builder::new().prefix("vlmscale-bench-train-").tempdir()?) } else { None };
    let pb = ProgressBar::new(((a.steps + 1) * sizes.len()) as u64);
    pb.set_style(
        ProgressStyle::with_template("{msg} {bar:30} {pos}/{len} steps, ETA {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let rows = bench_train(&cfg, &sizes, a.steps, export.as_ref().map(|d| d.path()), &mut |size, _, _| {
        pb.set_message(format!("vlmscale {size}"));
        pb.inc(1);
    })?;
    pb.finish_and_clear();

    let mut peer: Vec<Option<PeerRow>> = vec![None; rows.len()];
    let mut peer_note = String::new();
    if let Some(dir) = &export {
        let peers = PeersDir::locate(a.peers.peers_dir.as_deref()).map_err(|e| super::UsageError(e.to_string()))?;
        let script = peers.script("torch_train_peer.py");
        let spin = ProgressBar::new_spinner();
        spin.set_message(format!("PyTorch peer ({torch_threads} threads) on the same weights and batch…"));
        spin.enable_steady_tick(std::time::Duration::from_millis(200));
        let out = std::process::Command::new(&a.peers.python)
            .arg(&script)
            .arg("time")
            .args(sizes.iter().map(|s| dir.path().join(s)))
            .args(["--steps", &a.steps.to_string(), "--threads", &torch_threads.to_string()])
            .output();
        spin.finish_and_clear();
        match out {
            Ok(o) if o.status.success() => {
                for (slot, line) in peer.iter_mut().zip(String::from_utf8_lossy(&o.stdout).lines()) {
                    *slot = serde_json::from_str(line).ok();
                }
            }
            Ok(o) => {
                let err = String::from_utf8_lossy(&o.stderr);
                let last = err.lines().last().unwrap_or("").to_string();
                peer_note = if err.contains("No module named") {
                    format!(
                        "PyTorch peer NOT run: torch/transformers/safetensors missing for `{}` ({last})",
                        a.peers.python
                    )
                } else {
                    format!("PyTorch peer failed ({}): {last}", o.status)
                };
            }
            Err(e) => peer_note = format!("PyTorch peer NOT run: could not start `{}` ({e})", a.peers.python),
        }
    }

    println!(
        "{:<4} {:>9} {:>9} | {:>8} {:>9} {:>8} {:>6} | {:>8} {:>9} {:>8} | {:>7} | step-0 loss ours / torch",
        "LLM",
        "N",
        "trainable",
        "s/step",
        "samples/s",
        "GFLOP/s",
        "limit",
        "torch s",
        "samples/s",
        "GFLOP/s",
        "speed-up"
    );
    for (r, p) in rows.iter().zip(&peer) {
        let ours = format!(
            "{:<4} {:>9} {:>9} | {:>8.4} {:>9.1} {:>8.2} {:>5.1}%",
            r.llm,
            r.llm_parameters,
            r.trainable_parameters,
            r.step_s,
            r.samples_per_s,
            r.gflops,
            100.0 * r.gflops / limit
        );
        match p {
            Some(p) => println!(
                "{ours} | {:>8.4} {:>9.1} {:>8.2} | {:>6.2}× | {:.6} / {:.6}",
                p.step_s,
                r.batch_size as f64 / p.step_s,
                r.flops_per_step / p.step_s / 1e9,
                p.step_s / r.step_s,
                r.step0_loss,
                p.step0_loss
            ),
            None => println!("{ours} | {:>8} {:>9} {:>8} | {:>7} | {:.6}", "—", "—", "—", "—", r.step0_loss),
        }
    }
    if let Some(p) = peer.iter().flatten().next() {
        println!(
            "\nPyTorch {} with torch.set_num_threads({}), eager mode, torch.optim.AdamW defaults, OMP_WAIT_POLICY {}; speed-up = torch s/step ÷ ours",
            p.torch,
            p.threads,
            std::env::var("OMP_WAIT_POLICY").unwrap_or_else(|_| "unset (spin-waits)".into())
        );
    }
    if !peer_note.is_empty() {
        println!("\n{peer_note}");
    } else if !a.torch {
        println!("\n(PyTorch peer not run: pass --torch)");
    }
    println!("after the run: {}", load_average());
    if let Some(path) = &a.json {
        let v = serde_json::json!({
            "threads": threads,
            "load_average_before": load,
            "matmul_limit_gflops": limit,
            "rows": rows,
            "torch": peer,
            "torch_threads": torch_threads,
        });
        std::fs::write(path, serde_json::to_string_pretty(&v)?)?;
    }
    Ok(())
}

/// The LLM weights (f32 safetensors) and `config.json` written to a temporary folder for the llama.cpp
/// peer. Errors: writing them.
fn prepare_llama_cpp_peer(a: &InferArgs, bench: &bench::infer::InferBench) -> Result<tempfile::TempDir> {
    let dir = tempfile::Builder::new().prefix("vlmscale-llama-cpp-").tempdir()?;
    bench.export_llm(&dir.path().join("model.safetensors"))?;
    let cfg = bench::infer::qwen15_config_json(a.size.name())?;
    std::fs::write(dir.path().join("config.json"), serde_json::to_string_pretty(&cfg)?)?;
    Ok(dir)
}

/// llama.cpp's `llama-bench` on the exported weights (peers/llama_cpp_peer.py) in each of the bf16 /
/// q8_0 / q4_0 `formats`: prefill at each Q + V, decode at depth 0 and at the largest Q + V. Prints
/// its rows, or why it did not run.
fn llama_cpp_peer(
    a: &InferArgs,
    dir: &std::path::Path,
    formats: &[engine::model::WeightFormat],
    vs: &[usize],
    threads: usize,
) {
    let fmts: Vec<String> = formats.iter().map(|f| f.name()).filter(|f| f != "f32").collect();
    if fmts.is_empty() {
        println!("peer llama.cpp: NOT run (it runs the bf16, q8_0 and q4_0 formats of --weights; none given)");
        return;
    }
    let peers = match PeersDir::locate(a.peers.peers_dir.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            println!("peer llama.cpp: NOT run: {e}");
            return;
        }
    };
    let lens: Vec<String> = vs.iter().map(|v| (v + a.text_tokens).to_string()).collect();
    let depth = vs.iter().max().map_or(0, |v| v + a.text_tokens);
    let spin = ProgressBar::new_spinner();
    spin.set_message("llama.cpp peer (first run: builds llama.cpp, tens of minutes)…");
    spin.enable_steady_tick(std::time::Duration::from_millis(500));
    let out = std::process::Command::new(&a.peers.python)
        .arg(peers.script("llama_cpp_peer.py"))
        .arg("bench")
        .arg("--weights")
        .arg(dir.join("model.safetensors"))
        .arg("--config")
        .arg(dir.join("config.json"))
        .arg("--workdir")
        .arg(dir.join("gguf"))
        .args(["--formats", &fmts.join(","), "--prompts", &lens.join(","), "--depth", &depth.to_string()])
        .args(["--threads", &threads.to_string(), "--repeats", &a.repeats.max(2).to_string()])
        .args(["--decode-tokens", &a.decode_steps.max(1).to_string()])
        .output();
    spin.finish_and_clear();
    let out = match out {
        Ok(o) => o,
        Err(e) => return println!("peer llama.cpp: could not run `{}` ({e})", a.peers.python),
    };
    let mut any = false;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        if let Some(e) = v["error"].as_str() {
            println!("peer llama.cpp: could not build or run it: {e}");
            continue;
        }
        if let Some(n) = v["note"].as_str() {
            println!("peer llama.cpp: note: {n}");
            continue;
        }
        any = true;
        let ms = v["ms"].as_f64().unwrap_or(f64::NAN);
        let f = v["format"].as_str().unwrap_or("?");
        match v["test"].as_str() {
            Some("prefill") => println!("peer llama.cpp {f:<4} prefill {:>4} tokens {ms:>8.1} ms", v["tokens"]),
            _ => println!("peer llama.cpp {f:<4} decode at depth {:>4} {ms:>6.1} ms/token", v["depth"]),
        }
    }
    if !out.status.success() && !any {
        println!(
            "peer llama.cpp: NOT run ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        );
    }
}

/// PyTorch (transformers' CLIPVisionModel + Qwen2ForCausalLM, `dtype` float32 or bfloat16, 2 threads)
/// on the same shapes, run after ours so that the two never share the cores.
fn pytorch_infer_peer(a: &InferArgs, peers: &PeersDir, vs: &[usize], dtype: &str) {
    let list = vs.iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",");
    let out = std::process::Command::new(&a.peers.python)
        .arg(peers.script("bench_infer_torch.py"))
        .args(["--size", a.size.name(), "--visual-tokens", &list])
        .args(["--text-tokens", &a.text_tokens.to_string(), "--decode-steps", &a.decode_steps.to_string()])
        .args(["--repeats", &a.repeats.to_string(), "--dtype", dtype])
        .output();
    let tag = if dtype == "bfloat16" { "bf16" } else { "f32" };
    match out {
        Ok(out) if out.status.success() => {
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { continue };
                let f = |k: &str| v[k].as_f64().unwrap_or(f64::NAN);
                match v["what"].as_str() {
                    Some("vision_tower_23_blocks") => {
                        println!("peer PyTorch {tag} vision tower (23 blocks) {:.1} ms", f("ms"))
                    }
                    Some("query_embedding") => {
                        println!("peer PyTorch {tag} query embedding (Q = {}) {:.1} ms", v["q"], f("ms"))
                    }
                    Some("llm") => println!(
                        "peer PyTorch {tag} qwen2 V {:>4} Q+V {:>4} | prefill {:>8.1} ms | decode {:>6.1} ms/token",
                        v["v"],
                        v["q_plus_v"],
                        f("prefill_ms"),
                        f("decode_ms_per_token")
                    ),
                    _ => println!("peer PyTorch: {line}"),
                }
            }
        }
        Ok(out) => println!(
            "peer PyTorch unavailable ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("")
        ),
        Err(e) => println!("peer PyTorch: could not run `{}` ({e})", a.peers.python),
    }
}

/// What `bench vision` / `bench infer` print in place of the candle-transformers peer in a build without
/// the `peers` feature.
#[cfg(not(feature = "peers"))]
const NO_CANDLE_PEER: &str = "peer: candle-transformers not built in (build with `--features peers`)";

/// candle-transformers' CLIP tower on the bench's weights (cargo feature `peers`; `None` without it).
fn candle_vision_peer(bench: &bench::vision::VisionBench, repeats: usize) -> Result<Option<bench::vision::BenchRow>> {
    #[cfg(feature = "peers")]
    return Ok(Some(bench::peers::candle::clip_vision(bench, repeats)?));
    #[cfg(not(feature = "peers"))]
    {
        let _ = (bench, repeats);
        Ok(None)
    }
}

/// candle-transformers' own Qwen2 on the bench's f32 LLM weights (cargo feature `peers`).
fn candle_transformers_peer(a: &InferArgs, bench: &bench::infer::InferBench, vs: &[usize]) -> Result<()> {
    #[cfg(feature = "peers")]
    bench::peers::candle::qwen2(bench, vs, a.text_tokens, a.repeats, a.decode_steps)?;
    #[cfg(not(feature = "peers"))]
    {
        let _ = (a, bench, vs);
        println!("{NO_CANDLE_PEER}");
    }
    Ok(())
}

/// The PyTorch peers' folder, or `None` (with a printed note) when `python` is `none` or no folder
/// is found; an explicit `--peers-dir` without the scripts is an error.
fn locate_peers(explicit: Option<&std::path::Path>, python: &str) -> Result<Option<PeersDir>> {
    if python == "none" {
        return Ok(None);
    }
    match PeersDir::locate(explicit) {
        Ok(p) => Ok(Some(p)),
        Err(e) if e.is_user_error() => Err(super::UsageError(e.to_string()).into()),
        Err(e) => {
            println!("peer PyTorch: NOT run: {e}");
            Ok(None)
        }
    }
}

/// `bench serve`: the random checkpoint, the server in process, loads (a), (b), (c), then llama-server
/// on (a) and (b); one table.
fn serve_bench(a: ServeArgs) -> Result<()> {
    use bench::serve::{self as bs, Target, TextPrompt};
    let usage = |m: &str| -> anyhow::Error { super::UsageError(m.into()).into() };
    if a.max_tokens < 2 {
        return Err(usage("--max-tokens must be ≥ 2 (decode tokens/s needs two tokens)"));
    }
    if a.streams == 0 || a.clients == 0 || a.load_max_tokens == 0 {
        return Err(usage("--streams, --clients and --load-max-tokens must be ≥ 1"));
    }
    if a.image_size == 0 || !a.image_size.is_multiple_of(14) {
        return Err(usage("--image-size must be a positive multiple of 14 (the tower's patch)"));
    }
    let threads = match a.threads {
        Some(0) => return Err(usage("--threads must be ≥ 1")),
        Some(n) => n,
        None => std::env::var("RAYON_NUM_THREADS")
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)),
    };
    // Before any tensor op: candle and rayon read these when their pools start.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    if std::env::var("CANDLE_NUM_THREADS").is_err() {
        std::env::set_var("CANDLE_NUM_THREADS", threads.to_string());
    }
    super::prepare_inference();
    let temp;
    let work = match &a.workdir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            d.clone()
        }
        None => {
            temp = tempfile::Builder::new().prefix("vlmscale-bench-serve-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    println!(
        "bench serve — random LLaVA-1.5 layout: CLIP ViT-L/14 shape at {px} px ({g}×{g} = {n} patch tokens) + mlp2x_gelu + {size} LLM, bf16 weights; {threads} thread{s}; (a) and (b) best of {r}; {load}",
        r = a.repeats.max(1),
        px = a.image_size,
        g = a.image_size / 14,
        n = (a.image_size / 14).pow(2),
        size = if a.size == "tiny" { "tiny test".to_string() } else { format!("Qwen1.5-{} shape", a.size.to_uppercase()) },
        s = if threads == 1 { "" } else { "s" },
        load = load_average(),
    );
    let ckpt = bs::write_checkpoint(&work, &a.size, a.image_size)?;
    println!(
        "checkpoint: {:.2} M parameters (LLM {:.2} M) written in {:.1} s",
        ckpt.parameters as f64 / 1e6,
        ckpt.llm.num_parameters() as f64 / 1e6,
        ckpt.seconds
    );
    let mut config = serve::ServeConfig::new(vec![ckpt.dir.clone()]);
    config.bf16 = true;
    config.request_timeout = std::time::Duration::from_secs(3600);
    config.queue_capacity = config.queue_capacity.max(2 * a.clients.max(a.streams));
    let t0 = Instant::now();
    let server = bs::InProcessServer::start(config)?;
    println!("vlmscale serve: loaded in {:.1} s, listening on http://{}", t0.elapsed().as_secs_f64(), server.addr);
    let addr = server.addr;
    let question = "What is shown in the image?";
    let image = bs::noise_png_data_url(a.image_size, 7)?;
    let mut prompt = TextPrompt { question: question.to_string(), ids: vec![] };

    let ours_a = bs::best_of(
        a.repeats,
        || bs::single(addr, Target::Vlmscale, &prompt, a.max_tokens),
        |r| r.decode_tokens_per_s,
    )?;
    println!(
        "(a) vlmscale: Q = {}, {} tokens: TTFT {:.1} ms, decode {:.2} tokens/s",
        ours_a.prompt_tokens, ours_a.tokens, ours_a.ttft_ms, ours_a.decode_tokens_per_s
    );
    let (steps0, rows0) =
        (bs::metric(addr, "vlmscale_decode_steps_total"), bs::metric(addr, "vlmscale_decode_rows_total"));
    let ours_b = bs::best_of(
        a.repeats,
        || bs::concurrent(addr, Target::Vlmscale, &prompt, a.max_tokens, a.streams),
        |r| r.steady_tokens_per_s,
    )?;
    let mean_batch = match (
        steps0,
        rows0,
        bs::metric(addr, "vlmscale_decode_steps_total"),
        bs::metric(addr, "vlmscale_decode_rows_total"),
    ) {
        (Some(s0), Some(r0), Some(s1), Some(r1)) if s1 > s0 => Some((r1 - r0) / (s1 - s0)),
        _ => None,
    };
    println!(
        "(b) vlmscale: {} streams, {} tokens: {:.2} tokens/s with all decoding ({:.2} over the whole run), mean decode batch {}",
        ours_b.streams,
        ours_b.tokens,
        ours_b.steady_tokens_per_s,
        ours_b.overall_tokens_per_s,
        mean_batch.map_or("?".into(), |b| format!("{b:.2}"))
    );
    let (image_ttft, image_v) = bs::image_ttft(addr, &image, question, 2)?;
    println!("(a') vlmscale: one streamed request with the image at V = {image_v}: TTFT {image_ttft:.1} ms");
    let kinds = bs::request_kinds(ckpt.grid(), ckpt.llm.num_hidden_layers);
    let load = (a.requests > 0)
        .then(|| bs::mixed_load(addr, &kinds, &image, question, a.clients, a.requests, a.load_max_tokens));
    if let Some(l) = &load {
        println!(
            "(c) vlmscale: {} × {} requests in {:.1} s: {} failed; TTFT p50 {:.1} ms, p99 {:.1} ms; {:.2} tokens/s ({} tokens); mix: {}",
            l.clients,
            l.requests_per_client,
            l.seconds,
            l.failed,
            l.ttft_p50_ms,
            l.ttft_p99_ms,
            l.tokens_per_s,
            l.tokens,
            l.mix.iter().map(|(k, n)| format!("{k} ×{n}")).collect::<Vec<_>>().join(", ")
        );
        for f in &l.failures {
            println!("    failed: {f}");
        }
    }
    server.stop();

    // llama-server on the same LLM weights, prompts of the same length as token ids.
    prompt.ids = bs::prompt_ids(ours_a.prompt_tokens, ckpt.llm.vocab_size, 11);
    let peer = serve_llama_server_peer(&a, &ckpt, &work, &prompt, threads);
    let (peer_a, peer_b, peer_note) = match peer {
        Ok((pa, pb, bin)) => (Some(pa), Some(pb), format!("llama-server: {}", bin.display())),
        Err(why) => (None, None, format!("llama-server: NOT run: {why}")),
    };

    let ratio = ours_b.steady_tokens_per_s / ours_a.decode_tokens_per_s;
    let peer_ratio = match (&peer_a, &peer_b) {
        (Some(pa), Some(pb)) => Some(pb.steady_tokens_per_s / pa.decode_tokens_per_s),
        _ => None,
    };
    let dash = || "—".to_string();
    let peer_col = format!("llama-server (GGUF BF16, -t {threads} --parallel {})", a.streams);
    println!();
    println!("{:<62} {:>16}   {}", "", "vlmscale serve", peer_col);
    let row = |what: String, ours: String, theirs: String| println!("{what:<62} {ours:>16}   {theirs}");
    row(
        format!("(a) 1 stream, text, Q = {}, {} tokens: TTFT ms", ours_a.prompt_tokens, a.max_tokens),
        format!("{:.1}", ours_a.ttft_ms),
        peer_a.as_ref().map_or_else(dash, |p| format!("{:.1}", p.ttft_ms)),
    );
    row(
        "(a) decode tokens/s".into(),
        format!("{:.2}", ours_a.decode_tokens_per_s),
        peer_a.as_ref().map_or_else(dash, |p| format!("{:.2}", p.decode_tokens_per_s)),
    );
    row(
        format!("(b) {} streams: aggregate decode tokens/s (all decoding)", a.streams),
        format!("{:.2}", ours_b.steady_tokens_per_s),
        peer_b.as_ref().map_or_else(dash, |p| format!("{:.2}", p.steady_tokens_per_s)),
    );
    row("(b) ratio to (a)".into(), format!("{ratio:.2}×"), peer_ratio.map_or_else(dash, |r| format!("{r:.2}×")));
    row(
        "(b) whole run, first token to last: tokens/s".into(),
        format!("{:.2}", ours_b.overall_tokens_per_s),
        peer_b.as_ref().map_or_else(dash, |p| format!("{:.2}", p.overall_tokens_per_s)),
    );
    row(
        "(b) mean TTFT ms".into(),
        format!("{:.1}", ours_b.mean_ttft_ms),
        peer_b.as_ref().map_or_else(dash, |p| format!("{:.1}", p.mean_ttft_ms)),
    );
    row(format!("(a') 1 stream with the image, V = {image_v}: TTFT ms"), format!("{image_ttft:.1}"), dash());
    if let Some(l) = &load {
        row(
            format!("(c) {} clients × {} requests, mixed V, stream on/off: failed", l.clients, l.requests_per_client),
            format!("{} / {}", l.failed, l.clients * l.requests_per_client),
            dash(),
        );
        row(
            "(c) TTFT p50 / p99 ms (server: arrival to first token)".into(),
            format!("{:.0} / {:.0}", l.ttft_p50_ms, l.ttft_p99_ms),
            dash(),
        );
        row(
            format!("(c) aggregate tokens/s ({} tokens in {:.1} s)", l.tokens, l.seconds),
            format!("{:.2}", l.tokens_per_s),
            dash(),
        );
    }
    println!();
    println!(
        "(b) target ≥ 2.5× one stream: {}",
        if ratio >= 2.5 { format!("met ({ratio:.2}×)") } else { format!("NOT met ({ratio:.2}×)") }
    );
    println!("{peer_note}");
    println!("after the run: {}", load_average());
    if let Some(p) = &a.json {
        let v = serde_json::json!({
            "size": a.size, "image_size": a.image_size, "threads": threads, "max_tokens": a.max_tokens,
            "single": ours_a, "concurrent": ours_b, "ratio": ratio, "mean_decode_batch": mean_batch,
            "image_ttft_ms": image_ttft, "image_visual_tokens": image_v, "mixed_load": load,
            "llama_server": {"single": peer_a, "concurrent": peer_b, "ratio": peer_ratio, "note": peer_note},
        });
        std::fs::write(p, serde_json::to_string_pretty(&v)?)?;
    }
    if load.as_ref().is_some_and(|l| l.failed > 0) {
        anyhow::bail!("{} requests of the mixed load failed", load.as_ref().map_or(0, |l| l.failed));
    }
    Ok(())
}

/// llama-server's (a) and (b) on the checkpoint's LLM (converted to a BF16 GGUF by
/// peers/llama_server_peer.py), or why it did not run.
fn serve_llama_server_peer(
    a: &ServeArgs,
    ckpt: &bench::serve::RandomCheckpoint,
    work: &std::path::Path,
    prompt: &bench::serve::TextPrompt,
    threads: usize,
) -> std::result::Result<(bench::serve::Single, bench::serve::Concurrent, PathBuf), String> {
    use bench::serve::{self as bs, Target};
    let bin = match &a.llama_server {
        Some(p) if p.as_os_str() == "none" => return Err("--llama-server none".into()),
        Some(p) if p.is_file() => p.clone(),
        Some(p) => return Err(format!("--llama-server {}: no such file", p.display())),
        None => bs::find_llama_server().ok_or(
            "no llama-server binary in the llama.cpp peer's cache (~/.cache/vlmscale/llama.cpp-*/build/bin; build it with `python3 peers/llama_cpp_peer.py build`) and no --llama-server PATH",
        )?,
    };
    let peers = PeersDir::locate(a.peers.peers_dir.as_deref()).map_err(|e| e.to_string())?;
    let gguf = work.join("model-bf16.gguf");
    let spin = ProgressBar::new_spinner();
    spin.set_message("converting the LLM to GGUF BF16 (peers/llama_server_peer.py)…");
    spin.enable_steady_tick(std::time::Duration::from_millis(500));
    let out = std::process::Command::new(&a.peers.python)
        .arg(peers.script("llama_server_peer.py"))
        .arg("gguf")
        .arg("--weights")
        .arg(ckpt.dir.join(engine::checkpoint::WEIGHTS_FILE))
        .arg("--config")
        .arg(ckpt.dir.join("config.json"))
        .arg("--out")
        .arg(&gguf)
        .output();
    spin.finish_and_clear();
    let out = out.map_err(|e| format!("could not run `{}` ({e})", a.peers.python))?;
    if !out.status.success() || !gguf.is_file() {
        let text = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = text.lines().chain(stderr.lines()).last().unwrap_or("").to_string();
        return Err(format!("the GGUF conversion failed ({}): {last}", out.status));
    }
    let ctx = a.streams * (prompt.ids.len() + a.max_tokens + 64).next_multiple_of(256);
    let server = bs::LlamaServer::start(&bin, &gguf, threads, a.streams, ctx, &work.join("llama-server.log"))
        .map_err(|e| e.to_string())?;
    let single = bs::best_of(
        a.repeats,
        || bs::single(server.addr, Target::LlamaServer, prompt, a.max_tokens),
        |r| r.decode_tokens_per_s,
    )
    .map_err(|e| e.to_string())?;
    println!(
        "(a) llama-server: Q = {}, {} tokens: TTFT {:.1} ms, decode {:.2} tokens/s",
        single.prompt_tokens, single.tokens, single.ttft_ms, single.decode_tokens_per_s
    );
    let conc = bs::best_of(
        a.repeats,
        || bs::concurrent(server.addr, Target::LlamaServer, prompt, a.max_tokens, a.streams),
        |r| r.steady_tokens_per_s,
    )
    .map_err(|e| e.to_string())?;
    println!(
        "(b) llama-server: {} streams, {} tokens: {:.2} tokens/s with all decoding ({:.2} over the whole run)",
        conc.streams, conc.tokens, conc.steady_tokens_per_s, conc.overall_tokens_per_s
    );
    drop(server);
    Ok((single, conc, bin))
}

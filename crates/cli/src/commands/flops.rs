//! `vlmscale flops`: inference FLOPs of one query.
use anyhow::Result;
use scaling::cost::arch::{CompressorKind, LlmArch, ProjectorKind, ReductionMethod, VisionArch};
use scaling::cost::exact::{query_cost, QuerySpec, Reduction};
use scaling::cost::paper_flops;
use std::path::PathBuf;

/// FLOPs of one query. Default: the paper's 2·N·(Q+V). With --exact: a per-term breakdown (vision
/// tower CLIP ViT-L/14-336, compressor, projector, LLM matmuls, attention over the context, LM head)
/// for an LLM architecture from --config (a Hugging Face or LLaVA config.json), --preset, or the
/// Qwen-1.5 preset nearest to --llm-params.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// N, LLM parameters (raw count, e.g. 7e9).
    #[arg(long, value_name = "N")]
    pub llm_params: Option<f64>,
    /// V, visual tokens.
    #[arg(long, value_name = "V")]
    pub visual_tokens: f64,
    /// Q, text tokens.
    #[arg(long, value_name = "Q", default_value_t = 0.0)]
    pub text_tokens: f64,
    /// Per-term exact count instead of 2·N·(Q+V).
    #[arg(long)]
    pub exact: bool,
    /// LLM config.json for --exact.
    #[arg(long, value_name = "config.json", requires = "exact")]
    pub config: Option<PathBuf>,
    /// Built-in LLM shape for --exact: qwen1.5-0.5b, qwen1.5-1.8b, qwen1.5-4b, qwen1.5-7b, qwen1.5-14b, vicuna-7b.
    #[arg(long, requires = "exact", conflicts_with = "config")]
    pub preset: Option<String>,
    /// Compressor (exact model; default quecc, or none with --token-reduction).
    #[arg(long, value_enum)]
    pub compressor: Option<CompressorKind>,
    /// A training-free reduction of a plain checkpoint's 576 patch tokens to V (exact model): the
    /// method's own FLOPs as a term; FastV splits the LLM prefill at layer --fastv-layer.
    #[arg(long, value_enum, requires = "exact")]
    pub token_reduction: Option<ReductionMethod>,
    /// FastV's layer K: layers 0..K run over all Q + 576 tokens, layers ≥ K over Q + V.
    #[arg(long, value_name = "K", default_value_t = models::reduction::DEFAULT_FASTV_LAYER)]
    pub fastv_layer: usize,
    /// Projector (exact model): `linear` or `mlp{N}x_gelu` (LLaVA-1.5: `mlp2x_gelu`).
    #[arg(long, default_value_t = ProjectorKind::MLP2X_GELU)]
    pub projector: ProjectorKind,
    /// Tokens of the question alone, for QueCC's query-embedding pass (default: Q).
    #[arg(long)]
    pub question_tokens: Option<f64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Below this an `--llm-params` value (a raw count) is taken for billions: no LLM has fewer than
/// 10⁵ parameters.
pub const IMPLAUSIBLE_PARAMS: f64 = 1e5;

/// `--llm-params` checked (a finite count ≥ 1), with a warning when it looks like billions.
fn llm_params(n: f64) -> Result<f64> {
    let n = check("--llm-params", n, 1.0)?;
    if n < IMPLAUSIBLE_PARAMS {
        eprintln!(
            "warning: --llm-params takes a raw parameter count: {n} is {n} parameters; for {n} billion write {:e}",
            n * 1e9
        );
    }
    Ok(n)
}

/// `FLOPs` checked: a finite number (the inputs were too large otherwise).
fn finite_flops(f: f64) -> Result<f64> {
    if f.is_finite() {
        Ok(f)
    } else {
        Err(super::UsageError(format!(
            "the FLOPs overflow ({f}): --llm-params, --visual-tokens and --text-tokens are too large"
        ))
        .into())
    }
}

/// V and K a reduction can take (as the engine's plan checks them): 1 ≤ V ≤ P patches, a square
/// for avgpool, and for FastV 1 ≤ K < the LLM's layers.
pub fn check_reduction(r: Reduction, v: f64, patches: usize, layers: usize) -> Result<()> {
    if !(v >= 1.0 && v <= patches as f64 && v.fract() == 0.0) {
        return Err(super::UsageError(format!(
            "--visual-tokens {v}: {} keeps a whole number of tokens from 1 to the {patches} patch tokens",
            r.method
        ))
        .into());
    }
    let side = v.sqrt().round();
    if r.method == ReductionMethod::AvgPool && side * side != v {
        return Err(
            super::UsageError(format!("--visual-tokens {v}: avgpool pools the grid to √V × √V, a square")).into()
        );
    }
    if r.method == ReductionMethod::FastV && !(1..layers).contains(&r.fastv_layer) {
        return Err(super::UsageError(format!(
            "--fastv-layer {}: FastV prunes after layer K with 1 ≤ K < {layers} (the LLM's layers)",
            r.fastv_layer
        ))
        .into());
    }
    Ok(())
}

fn check(flag: &str, x: f64, min: f64) -> Result<f64> {
    if x.is_finite() && x >= min {
        Ok(x)
    } else {
        Err(super::UsageError(format!("{flag} must be a number ≥ {min}, got {x}")).into())
    }
}

pub fn run(a: Args) -> Result<()> {
    let v = check("--visual-tokens", a.visual_tokens, 0.0)?;
    let q = check("--text-tokens", a.text_tokens, 0.0)?;
    if !a.exact {
        let n = a.llm_params.ok_or_else(|| {
            super::UsageError("--llm-params is required (or use --exact with --config/--preset)".into())
        })?;
        let n = llm_params(n)?;
        let f = finite_flops(paper_flops(n, q, v))?;
        if a.json {
            println!(
                "{}",
                serde_json::json!({"model": "paper", "formula": "2*N*(Q+V)", "llm_params": n, "text_tokens": q, "visual_tokens": v, "flops": f})
            );
        } else {
            println!("paper cost model: 2·N·(Q+V) = 2 × {n:.4e} × ({q} + {v}) = {f:.4e} FLOPs");
        }
        return Ok(());
    }
    let (name, llm) = match (&a.config, &a.preset, a.llm_params) {
        (Some(p), _, _) => (p.display().to_string(), LlmArch::from_config_file(p)?),
        (None, Some(name), _) => (
            name.clone(),
            LlmArch::preset(name).ok_or_else(|| {
                super::UsageError(format!("--preset: unknown `{name}` (known: {})", LlmArch::PRESETS.join(", ")))
            })?,
        ),
        (None, None, Some(n)) => {
            let (p, arch) = LlmArch::nearest_qwen(llm_params(n)?);
            (format!("{p} (nearest Qwen-1.5 preset to N = {n:.3e})"), arch)
        }
        (None, None, None) => {
            return Err(super::UsageError("--exact needs --config, --preset or --llm-params".into()).into())
        }
    };
    let vision = VisionArch::clip_vit_l14_336();
    let reduction = a.token_reduction.map(|method| Reduction { method, fastv_layer: a.fastv_layer });
    let compressor = match (a.compressor, reduction) {
        (Some(c), Some(r)) if c != CompressorKind::None => {
            return Err(super::UsageError(format!(
                "--token-reduction {} reduces a plain checkpoint's patch tokens: it needs --compressor none, not {}",
                r.method,
                c.name()
            ))
            .into())
        }
        (c, r) => c.unwrap_or(if r.is_some() { CompressorKind::None } else { CompressorKind::Quecc }),
    };
    if let Some(r) = reduction {
        check_reduction(r, v, vision.patches(), llm.num_hidden_layers)?;
    }
    let spec = QuerySpec {
        text_tokens: q,
        visual_tokens: v,
        question_tokens: a.question_tokens.unwrap_or(q),
        compressor,
        projector: a.projector,
        reduction,
    };
    let c = query_cost(&llm, &vision, &spec);
    finite_flops(c.total())?;
    if a.json {
        println!(
            "{}",
            serde_json::json!({"model": "exact", "llm": name, "llm_params": llm.params(), "breakdown": c, "total": c.total()})
        );
        return Ok(());
    }
    let reduced = match reduction {
        Some(r) if r.method == ReductionMethod::FastV => format!(", FastV at layer {}", r.fastv_layer),
        Some(r) => format!(", {} of the {} patch tokens", r.method, vision.patches()),
        None => String::new(),
    };
    println!(
        "exact cost of one query — LLM {name}: N = {:.4e} parameters, Q = {q}, V = {v}, {:?} + {}{reduced}",
        llm.params(),
        spec.compressor,
        spec.projector
    );
    println!("vision tower: CLIP ViT-L/14-336, 23 of 24 blocks (LLaVA select_layer −2)\n");
    let total = c.total();
    for t in &c.terms {
        println!("{:<24} {:>12.4e} FLOPs {:>6.1} %   {}", t.name, t.flops, 100.0 * t.flops / total, t.formula);
    }
    println!("{:<24} {:>12.4e} FLOPs  (prefill, to the first token)", "total", total);
    println!("{:<24} {:>12.4e} FLOPs  (each further token, context Q+V)", "decode per token", c.decode_per_token);
    println!("{:<24} {:>12.4e} FLOPs  (2·N·(Q+V); exact/paper = {:.2})", "paper's model", c.paper, total / c.paper);
    Ok(())
}

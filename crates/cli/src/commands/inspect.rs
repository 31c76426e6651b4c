//! `vlmscale inspect`: what a LLaVA-layout checkpoint is — architecture, N, V, compressor, projector —
//! and the inference FLOPs of one query from the scaling crate's exact cost model. Reads only the
//! configs and the weight files' headers (no weights are loaded).
use anyhow::Result;
use engine::model::{architecture_name, VlmSpec};
use models::compress::CompressorSpec;
use scaling::cost::arch::{CompressorKind, LlmArch, ReductionMethod, VisionArch};
use scaling::cost::exact::{query_cost, QuerySpec, Reduction};
use std::path::PathBuf;

/// Describe a checkpoint and the FLOPs of one query through it.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// LLaVA-layout checkpoint directory.
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Local CLIP directory overriding the checkpoint's `mm_vision_tower`.
    #[arg(long, value_name = "DIR")]
    pub vision_tower: Option<PathBuf>,
    /// Q, text tokens of the query (the paper's plots use 50).
    #[arg(long, default_value_t = 50.0)]
    pub text_tokens: f64,
    /// Tokens of the question alone, for QueCC's query-embedding pass (default: Q).
    #[arg(long)]
    pub question_tokens: Option<f64>,
    /// Count a training-free reduction of this plain checkpoint's patch tokens to --visual-tokens
    /// (the methods of `generate --token-reduction`).
    #[arg(long, value_enum, requires = "visual_tokens")]
    pub token_reduction: Option<ReductionMethod>,
    /// V kept by --token-reduction.
    #[arg(long, value_name = "V", requires = "token_reduction")]
    pub visual_tokens: Option<f64>,
    /// FastV's layer K (--token-reduction fastv).
    #[arg(long, value_name = "K", default_value_t = models::reduction::DEFAULT_FASTV_LAYER)]
    pub fastv_layer: usize,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: Args) -> Result<()> {
    if !(a.text_tokens.is_finite() && a.text_tokens >= 0.0) {
        return Err(super::UsageError(format!("--text-tokens must be ≥ 0, got {}", a.text_tokens)).into());
    }
    let s = VlmSpec::resolve(&a.model, a.vision_tower.as_deref())?;
    let llm = s.llm_config();
    let n = llm.num_parameters();
    let v = s.visual_tokens();
    let arch = LlmArch {
        hidden_size: llm.hidden_size,
        num_hidden_layers: llm.num_hidden_layers,
        num_attention_heads: llm.num_attention_heads,
        num_key_value_heads: Some(llm.num_key_value_heads),
        intermediate_size: llm.intermediate_size,
        vocab_size: llm.vocab_size,
        tie_word_embeddings: llm.tie_word_embeddings,
        max_position_embeddings: Some(llm.max_position_embeddings),
    };
    let vc = &s.vision_cfg;
    let vision = VisionArch {
        hidden_size: vc.hidden_size,
        intermediate_size: vc.intermediate_size,
        num_hidden_layers: vc.num_hidden_layers,
        image_size: vc.image_size,
        patch_size: vc.patch_size,
        layers_run: s.vision_layers_run(),
        num_attention_heads: vc.num_attention_heads,
    };
    let (compressor, compressor_desc) = match &s.spec {
        CompressorSpec::Quecc(c) => {
            (CompressorKind::Quecc, format!("quecc (kernel {}, stride {})", c.kernel, c.stride))
        }
        CompressorSpec::None => (CompressorKind::None, "none (all patch tokens)".to_string()),
        CompressorSpec::AvgPool { .. } => (CompressorKind::Avgpool, "avgpool".to_string()),
        CompressorSpec::TokenPacker(_) => (CompressorKind::Tokenpacker, "tokenpacker".to_string()),
    };
    let projector = s.projector_kind;
    let q = a.text_tokens;
    let reduction = a.token_reduction.map(|method| Reduction { method, fastv_layer: a.fastv_layer });
    let (v, compressor_desc) = match (reduction, a.visual_tokens) {
        (Some(r), Some(kept)) => {
            if compressor != CompressorKind::None {
                return Err(super::UsageError(format!(
                    "--token-reduction {} reduces a plain checkpoint's patch tokens; {} has a trained compressor ({compressor_desc}, V = {v})",
                    r.method,
                    a.model.display()
                ))
                .into());
            }
            super::flops::check_reduction(r, kept, vision.patches(), llm.num_hidden_layers)?;
            (kept, format!("none; token reduction {} to V = {kept}", r.method))
        }
        _ => (v as f64, compressor_desc),
    };
    let spec = QuerySpec {
        text_tokens: q,
        visual_tokens: v,
        question_tokens: a.question_tokens.unwrap_or(q),
        compressor,
        projector,
        reduction,
    };
    let cost = query_cost(&arch, &vision, &spec);
    let arch_name = architecture_name(llm.architecture);
    let projector_name = s.ckpt.multimodal_config().projector_type().to_string();
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "model": a.model.display().to_string(),
                "architecture": arch_name,
                "template": s.template.name(),
                "llm_params": n,
                "visual_tokens": v as u64,
                "compressor": compressor_desc,
                "projector": projector_name,
                "vision_tower": {"hidden_size": vc.hidden_size, "layers": vc.num_hidden_layers, "layers_run": vision.layers_run,
                                 "image_size": vc.image_size, "patch_size": vc.patch_size},
                "text_tokens": q,
                "flops": {"total": cost.total(), "decode_per_token": cost.decode_per_token, "paper": cost.paper, "breakdown": cost},
            })
        );
        return Ok(());
    }
    println!("model          {}", a.model.display());
    println!("architecture   {arch_name} (template {})", s.template.name());
    println!(
        "LLM            N = {n} parameters ({:.3} B): H = {}, {} layers, {} heads / {} KV heads, vocab {}, context {}",
        n as f64 / 1e9,
        llm.hidden_size,
        llm.num_hidden_layers,
        llm.num_attention_heads,
        llm.num_key_value_heads,
        llm.vocab_size,
        llm.max_position_embeddings
    );
    println!(
        "vision tower   CLIP d = {}, {} of {} blocks run, {} px, patch {} ({} patch tokens)",
        vc.hidden_size,
        vision.layers_run,
        vc.num_hidden_layers,
        vc.image_size,
        vc.patch_size,
        vc.num_patches()
    );
    println!("compressor     {compressor_desc}");
    println!("projector      {projector_name}");
    println!("V              {v} visual tokens");
    println!("FLOPs of one query (Q = {q}, V = {v}; scaling::cost::exact):");
    for t in &cost.terms {
        println!("  {:<22} {:>12.4e}", t.name, t.flops);
    }
    println!("  {:<22} {:>12.4e}  (prefill, to the first token)", "total", cost.total());
    println!("  {:<22} {:>12.4e}  (each further token)", "decode per token", cost.decode_per_token);
    println!("  {:<22} {:>12.4e}  (paper's 2·N·(Q+V))", "paper's model", cost.paper);
    Ok(())
}

//! Exact per-term inference FLOPs of one VLM query (one image, Q text tokens, V visual tokens), in the
//! accounting of Hoffmann et al. 2022 (Chinchilla), Appendix F: every matrix product counts 2 FLOPs per
//! multiply-add; both attention products (QKᵀ and attention·V) are counted; element-wise work (norms,
//! activations, softmax, residual adds, biases) is O(width) per token and left out.
//!
//! Attention note: Kaplan et al. 2020 (Table 1) write 2 · n_layers · ctx · d_model per token for
//! attention, which counts one of the two products; here each costs 2 · ctx · d_model per token per
//! layer, so 4 · n_layers · ctx · d_model in all.
use super::arch::{CompressorKind, LlmArch, ProjectorKind, ReductionMethod, VisionArch};
use serde::Serialize;

/// One named term of a cost breakdown.
#[derive(Debug, Clone, Serialize)]
pub struct Term {
    /// Short name, e.g. `llm.matmul`.
    pub name: String,
    /// FLOPs.
    pub flops: f64,
    /// How it was computed, in words and symbols.
    pub formula: String,
}

/// The breakdown of one query: vision tower, compressor (with QueCC's extra LLM pass over the question),
/// projector, LLM prefill of Q + V tokens, and one decode step at the end of that context.
#[derive(Debug, Clone, Serialize)]
pub struct QueryCost {
    /// Terms of the prefill path (everything up to the first output token).
    pub terms: Vec<Term>,
    /// FLOPs of one decode step right after the prefill (context Q + V).
    pub decode_per_token: f64,
    /// The paper's 2·N·(Q + V) for the same N, Q, V, for comparison.
    pub paper: f64,
}

impl QueryCost {
    /// Sum of the prefill terms (FLOPs to the first token).
    pub fn total(&self) -> f64 {
        self.terms.iter().map(|t| t.flops).sum()
    }
}

/// FLOPs of running `arch` over `tokens` new tokens after `past` cached ones, without the LM head:
/// (matmul FLOPs, attention FLOPs). Causal: new token i attends to past + i + 1 positions.
pub fn llm_forward(arch: &LlmArch, tokens: f64, past: f64) -> (f64, f64) {
    let l = arch.num_hidden_layers as f64;
    let h = arch.hidden_size as f64;
    let matmul = 2.0 * tokens * l * arch.block_matmul_params();
    // Σ_{i=1..tokens} (past + i) context positions, two products of 2·ctx·H each per layer.
    let ctx_sum = tokens * past + tokens * (tokens + 1.0) / 2.0;
    let attention = 4.0 * l * h * ctx_sum;
    (matmul, attention)
}

/// [`llm_forward`] over `layers` of the decoder's blocks only (FastV's two parts).
fn llm_layers(arch: &LlmArch, layers: f64, tokens: f64, past: f64) -> (f64, f64) {
    let h = arch.hidden_size as f64;
    let ctx_sum = tokens * past + tokens * (tokens + 1.0) / 2.0;
    (2.0 * tokens * layers * arch.block_matmul_params(), 4.0 * layers * h * ctx_sum)
}

/// FLOPs of a vision-side training-free reduction of one image to `visual_tokens` tokens from the
/// select layer's P patch tokens (+ CLS) of width d, with the formula, as the engine computes them
/// (`models::reduction`): products count 2 per multiply-add, and here — unlike the LLM's terms —
/// element-wise sums are counted too, since they are all these methods do. FastV's cost is in the
/// LLM ([`query_cost`]); the attention maps these methods read are the tower's own (no extra FLOPs).
/// - VisionZip (`visionzip.py`): CLS scores summed over heads (heads·T), keys averaged over heads and
///   L2-normalised (T·d + 3·T·d_head), cosine similarity of the R = T − dominant remaining tokens to
///   the c contextual targets (2·(R − c)·c·d_head), and the merge (R − c)·d + 2·c·d.
/// - CLS top-k: the mean over heads of the CLS row, heads·T.
/// - PruMerge+ (fixed V or adaptive, counted at V): the next block's single-head CLS attention
///   (layer norm 5·T·d, `k_proj` on T tokens 2·T·d², `q_proj` on CLS 2·d², scores 2·T·d), keys
///   normalised (3·T·d), each of the V − 1 kept patches' similarity to the other patches
///   (2·(V − 1)·P·d) and weighted sum of its 32 nearest (2·(V − 1)·32·d), and the remainder token
///   (2·(P − V + 1)·d).
/// - avgpool: P·d.
pub fn reduction(method: ReductionMethod, vision: &VisionArch, visual_tokens: f64) -> (f64, String) {
    let p = vision.patches() as f64;
    let t = p + 1.0;
    let d = vision.hidden_size as f64;
    let heads = vision.num_attention_heads.max(1) as f64;
    let hd = d / heads;
    let v = visual_tokens.min(t);
    match method {
        ReductionMethod::VisionZip => {
            let c = (10.0 * v / 64.0).floor();
            let r = t - (v - c);
            let f =
                heads * t + t * d + 3.0 * t * hd + 2.0 * (r - c).max(0.0) * c * hd + (r - c).max(0.0) * d + 2.0 * c * d;
            (f, format!("heads·T + T·d + 3·T·d_head + 2·(R−c)·c·d_head + (R−c)·d + 2·c·d, c = {c}, R = {r}"))
        }
        ReductionMethod::ClsTopK => (heads * t, "heads·T (mean over heads of the CLS row)".into()),
        ReductionMethod::PruMergePlus | ReductionMethod::PruMergePlusFixed => {
            let kept = (v - 1.0).max(0.0);
            let f = 5.0 * t * d
                + 2.0 * t * d * d
                + 2.0 * d * d
                + 2.0 * t * d
                + 3.0 * t * d
                + 2.0 * kept * p * d
                + 2.0 * kept * 32.0_f64.min(p - 1.0) * d
                + 2.0 * (p - kept) * d;
            (f, "5·T·d + 2·T·d² + 2·d² + 2·T·d + 3·T·d + 2·(V−1)·P·d + 2·(V−1)·32·d + 2·(P−V+1)·d".into())
        }
        ReductionMethod::AvgPool => (p * d, "P·d (each patch added once)".into()),
        ReductionMethod::FastV => (0.0, "in the LLM".into()),
    }
}

/// FLOPs of a training forward pass of `arch` over one sequence of `tokens` tokens, without the LM
/// head: (matmul FLOPs, attention FLOPs), the attention counted over the full `tokens`² score matrix
/// (training computes it whole and masks it).
pub fn llm_forward_full(arch: &LlmArch, tokens: f64) -> (f64, f64) {
    let l = arch.num_hidden_layers as f64;
    let h = arch.hidden_size as f64;
    (2.0 * tokens * l * arch.block_matmul_params(), 4.0 * l * h * tokens * tokens)
}

/// CLIP vision tower FLOPs for one image: patch embedding plus `layers_run` pre-LN blocks over
/// patches + 1 (CLS) tokens.
pub fn vision_tower(v: &VisionArch) -> f64 {
    let p = v.patches() as f64;
    let s = p + 1.0;
    let d = v.hidden_size as f64;
    let patch_embed = 2.0 * p * (3 * v.patch_size * v.patch_size) as f64 * d;
    let block = 2.0 * s * (4.0 * d * d + 2.0 * d * v.intermediate_size as f64) + 4.0 * s * s * d;
    patch_embed + v.layers_run as f64 * block
}

/// Compressor FLOPs for one image producing `visual_tokens` tokens from `patches` tokens of width d
/// (multi-level features are 4·d wide), with the LLM width `h_llm` for QueCC's text projection.
pub fn compressor(kind: CompressorKind, patches: f64, d: f64, visual_tokens: f64, h_llm: f64) -> f64 {
    let kv_mlps = 2.0 * 2.0 * patches * (4.0 * d * d + d * d); // k_proj, v_proj: 4d→d→d
    let mha = 2.0 * visual_tokens * d * d   // query in-projection
        + 2.0 * 2.0 * patches * d * d        // key and value in-projections
        + 4.0 * patches * d                  // each query attends to its own window: V · (P / V) keys
        + 2.0 * visual_tokens * d * d; // output projection
    match kind {
        CompressorKind::None => 0.0,
        CompressorKind::Avgpool => patches * d,
        CompressorKind::Quecc | CompressorKind::QueccNoQuery => {
            let text = if kind.uses_query() { 2.0 * h_llm * d } else { 0.0 }; // text projection of the query embedding
            text + 2.0 * patches * 2.0 * d * d       // q_proj MLP d→d→d on every patch
                + 2.0 * patches * d                  // depth-wise conv, kernel = stride: each input once
                + kv_mlps
                + mha
        }
        CompressorKind::Tokenpacker => {
            4.0 * patches * d                        // bilinear down-sampling (≤ 4 taps per output, bounded by P)
                + 2.0 * visual_tokens * d * d        // Linear (no bias) on the queries
                + kv_mlps
                + mha
        }
    }
}

/// Projector FLOPs for `visual_tokens` tokens from width d to LLM width H: the first Linear(d → H)
/// plus depth − 1 × Linear(H → H) (`linear`: 2·V·d·H; `mlp2x_gelu`: 2·V·(d·H + H·H)).
pub fn projector(kind: ProjectorKind, visual_tokens: f64, d: f64, h: f64) -> f64 {
    2.0 * visual_tokens * (d * h + kind.depth().saturating_sub(1) as f64 * h * h)
}

/// What the query is made of.
#[derive(Debug, Clone)]
pub struct QuerySpec {
    /// Q, text tokens in the LLM input.
    pub text_tokens: f64,
    /// V, visual tokens in the LLM input.
    pub visual_tokens: f64,
    /// Tokens of the question alone (QueCC's query-embedding pass); defaults to Q in the CLI.
    pub question_tokens: f64,
    /// Compressor.
    pub compressor: CompressorKind,
    /// Projector.
    pub projector: ProjectorKind,
    /// A training-free token reduction of a plain checkpoint's patch tokens (compressor `None`) to V.
    pub reduction: Option<Reduction>,
}

/// A training-free reduction in a query: the method and FastV's layer K (layers 0..K see every patch
/// token, layers ≥ K the V kept; ignored by the other methods).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reduction {
    /// The method.
    pub method: ReductionMethod,
    /// FastV's K.
    pub fastv_layer: usize,
}

/// The full breakdown of one query through vision tower, compressor, projector and LLM.
pub fn query_cost(llm: &LlmArch, vision: &VisionArch, q: &QuerySpec) -> QueryCost {
    let d = vision.hidden_size as f64;
    let h = llm.hidden_size as f64;
    let l = llm.num_hidden_layers as f64;
    let p = vision.patches() as f64;
    let ctx = q.text_tokens + q.visual_tokens;
    let lm_head = 2.0 * h * llm.vocab_size as f64;
    // FastV: layers 0..K over Q + P tokens, layers K.. over Q + V (K capped at the layer count).
    let fastv = q.reduction.filter(|r| r.method == ReductionMethod::FastV).map(|r| (r.fastv_layer as f64).min(l));
    let (mm, att) = match fastv {
        None => llm_forward(llm, ctx, 0.0),
        Some(k) => {
            let (m1, a1) = llm_layers(llm, k, q.text_tokens + p, 0.0);
            let (m2, a2) = llm_layers(llm, l - k, ctx, 0.0);
            (m1 + m2, a1 + a2)
        }
    };
    let mut terms = vec![Term {
        name: "vision_tower".into(),
        flops: vision_tower(vision),
        formula: format!(
            "patch embed 2·P·3p²·d + {} blocks × [2·(P+1)·(4d² + 2d·d_ff) + 4·(P+1)²·d], P = {}",
            vision.layers_run,
            vision.patches()
        ),
    }];
    if q.compressor.uses_query() {
        let (qm, qa) = llm_forward(llm, q.question_tokens, 0.0);
        terms.push(Term {
            name: "quecc.query_embedding".into(),
            flops: qm + qa,
            formula: format!("LLM pass over the {} question tokens, no LM head", q.question_tokens),
        });
    }
    terms.push(Term {
        name: "compressor".into(),
        flops: compressor(q.compressor, p, d, q.visual_tokens, h),
        formula: format!("{:?}: MLPs on P tokens, windowed attention of V queries", q.compressor),
    });
    if let Some(r) = q.reduction {
        let (flops, formula) = match fastv {
            // The last prompt token's attention probabilities at layer K − 1, averaged over heads.
            Some(_) => {
                (2.0 * h * (q.text_tokens + p), "2·H·(Q+P): the last prompt token's scores at layer K − 1".into())
            }
            None => reduction(r.method, vision, q.visual_tokens),
        };
        terms.push(Term { name: format!("reduction.{}", r.method), flops, formula });
    }
    // FastV projects every patch token; the others project the V they keep.
    let projected = if fastv.is_some() { p } else { q.visual_tokens };
    terms.push(Term {
        name: "projector".into(),
        flops: projector(q.projector, projected, d, h),
        formula: format!("{}: 2·V·(d·H + (depth − 1)·H·H)", q.projector),
    });
    let (mm_formula, att_formula) = match fastv {
        None => ("2·(Q+V)·n_layers·(2H² + 2H·H_kv + 3H·d_ff)", "4·n_layers·H·Σ_i ctx_i, ctx_i = i (causal prefill)"),
        Some(_) => (
            "2·[K·(Q+P) + (n_layers−K)·(Q+V)]·(2H² + 2H·H_kv + 3H·d_ff)",
            "4·H·[K·Σ_{i≤Q+P} i + (n_layers−K)·Σ_{i≤Q+V} i] (causal prefill, FastV)",
        ),
    };
    terms.push(Term { name: "llm.matmul".into(), flops: mm, formula: mm_formula.into() });
    terms.push(Term { name: "llm.attention".into(), flops: att, formula: att_formula.into() });
    terms.push(Term { name: "llm.lm_head".into(), flops: lm_head, formula: "2·H·vocab, last position only".into() });
    // One more token: every layer's matrices, attention over its own cached context.
    let attention_ctx = match fastv {
        None => l * (ctx + 1.0),
        Some(k) => k * (q.text_tokens + p + 1.0) + (l - k) * (ctx + 1.0),
    };
    let decode_per_token = 2.0 * l * llm.block_matmul_params() + 4.0 * h * attention_ctx + lm_head;
    QueryCost { terms, decode_per_token, paper: super::paper_flops(llm.params(), q.text_tokens, q.visual_tokens) }
}

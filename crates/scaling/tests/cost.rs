//! Cost models against hand-computed closed forms and a published figure.
use scaling::cost::arch::{CompressorKind, LlmArch, ProjectorKind, ReductionMethod, VisionArch};
use scaling::cost::exact::{llm_forward, projector, query_cost, reduction, vision_tower, QuerySpec, Reduction};
use scaling::cost::paper_flops;

#[test]
fn paper_cost_is_two_n_times_tokens() {
    assert_eq!(paper_flops(7e9, 50.0, 16.0), 2.0 * 7e9 * 66.0);
    assert_eq!(paper_flops(0.5e9, 0.0, 1.0), 1e9);
}

fn tiny() -> LlmArch {
    // H = 4, 1 layer, 2 heads (head dim 2), 1 KV head, d_ff = 8, vocab 10.
    LlmArch {
        hidden_size: 4,
        num_hidden_layers: 1,
        num_attention_heads: 2,
        num_key_value_heads: Some(1),
        intermediate_size: 8,
        vocab_size: 10,
        tie_word_embeddings: false,
        max_position_embeddings: None,
    }
}

#[test]
fn llm_terms_match_hand_counts() {
    // per block: q 4·4 + k 4·2 + v 4·2 + o 4·4 + SwiGLU 3·4·8 = 16+8+8+16+96 = 144 matrix parameters
    assert_eq!(tiny().block_matmul_params(), 144.0);
    let (mm, att) = llm_forward(&tiny(), 3.0, 0.0);
    assert_eq!(mm, 2.0 * 3.0 * 144.0);
    // causal prefill of 3 tokens: contexts 1, 2, 3; QKᵀ and A·V: 2·ctx·H FLOPs each, per layer
    assert_eq!(att, 4.0 * 4.0 * (1.0 + 2.0 + 3.0));
    // two new tokens after 5 cached: contexts 6 and 7
    assert_eq!(llm_forward(&tiny(), 2.0, 5.0).1, 4.0 * 4.0 * 13.0);
    // parameters: embeddings 40 + block 144 + 2 norms 8 + final norm 4 + untied head 40
    assert_eq!(tiny().params(), 40.0 + 144.0 + 8.0 + 4.0 + 40.0);
}

#[test]
fn clip_vit_l14_336_matches_published_macs() {
    // timm's model card for vit_large_patch14_clip_336.openai: 191.1 GMACs per image (24 blocks);
    // FLOPs = 2 · MACs.
    let full = VisionArch { layers_run: 24, ..VisionArch::clip_vit_l14_336() };
    let gmacs = vision_tower(&full) / 2.0 / 1e9;
    assert!((gmacs - 191.1).abs() / 191.1 < 0.01, "{gmacs} GMACs");
    assert_eq!(VisionArch::clip_vit_l14_336().patches(), 576);
}

#[test]
fn qwen_presets_have_their_nominal_sizes() {
    for (name, billions) in [
        ("qwen1.5-0.5b", 0.46),
        ("qwen1.5-1.8b", 1.84),
        ("qwen1.5-4b", 3.95),
        ("qwen1.5-7b", 7.72),
        ("qwen1.5-14b", 14.17),
    ] {
        let n = LlmArch::preset(name).unwrap().params() / 1e9;
        assert!((n - billions).abs() / billions < 0.03, "{name}: {n} B");
    }
    assert_eq!(LlmArch::nearest_qwen(7e9).0, "qwen1.5-7b");
}

#[test]
fn exact_breakdown_sums_and_decode() {
    let spec = QuerySpec {
        text_tokens: 50.0,
        visual_tokens: 16.0,
        question_tokens: 20.0,
        compressor: CompressorKind::Quecc,
        projector: ProjectorKind::MLP2X_GELU,
        reduction: None,
    };
    let llm = LlmArch::preset("qwen1.5-0.5b").unwrap();
    let c = query_cost(&llm, &VisionArch::clip_vit_l14_336(), &spec);
    let names: Vec<_> = c.terms.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "vision_tower",
            "quecc.query_embedding",
            "compressor",
            "projector",
            "llm.matmul",
            "llm.attention",
            "llm.lm_head"
        ]
    );
    assert_eq!(c.total(), c.terms.iter().map(|t| t.flops).sum::<f64>());
    assert_eq!(projector(ProjectorKind::MLP2X_GELU, 16.0, 1024.0, 1024.0), 2.0 * 16.0 * (1024.0 * 1024.0 * 2.0));
    // LLaVA's builder: linear = one Linear(d → H); mlp3x_gelu = Linear(d → H) + 2 × Linear(H → H).
    assert_eq!(projector(ProjectorKind::Linear, 16.0, 1024.0, 4096.0), 2.0 * 16.0 * 1024.0 * 4096.0);
    assert_eq!(
        projector(ProjectorKind::parse("mlp3x_gelu").unwrap(), 16.0, 1024.0, 4096.0),
        2.0 * 16.0 * (1024.0 * 4096.0 + 2.0 * 4096.0 * 4096.0)
    );
    // without QueCC there is no query-embedding pass
    let c2 = query_cost(&llm, &VisionArch::clip_vit_l14_336(), &QuerySpec { compressor: CompressorKind::None, ..spec });
    assert!(!c2.terms.iter().any(|t| t.name == "quecc.query_embedding"));
    assert!(c.decode_per_token > 0.0 && c.paper == 2.0 * llm.params() * 66.0);
}

#[test]
fn config_file_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("config.json");
    std::fs::write(&p, r#"{"hidden_size": 64}"#).unwrap();
    let e = LlmArch::from_config_file(&p).unwrap_err().to_string();
    assert!(e.contains("config.json") && e.contains("num_hidden_layers"), "{e}");
    std::fs::write(&p, r#"{"hidden_size": 63, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 8, "vocab_size": 10}"#).unwrap();
    assert!(LlmArch::from_config_file(&p).unwrap_err().to_string().contains("multiple"));
    assert!(LlmArch::from_config_file(&dir.path().join("missing.json")).is_err());
}

fn term(c: &scaling::cost::exact::QueryCost, name: &str) -> f64 {
    c.terms.iter().find(|t| t.name == name).map(|t| t.flops).unwrap_or_else(|| panic!("no term {name}"))
}

/// FastV at layer K splits the LLM: K = 0 is the LLM over Q + V, K = n_layers the LLM over Q + P, and
/// in between the per-layer costs add (independent of the formula: the layers' costs are separable).
#[test]
fn fastv_splits_the_llm_prefill_and_decode_at_layer_k() {
    let llm = LlmArch::preset("qwen1.5-0.5b").unwrap();
    let vision = VisionArch::clip_vit_l14_336();
    let p = vision.patches() as f64;
    let spec = |v: f64, reduction: Option<Reduction>| QuerySpec {
        text_tokens: 50.0,
        visual_tokens: v,
        question_tokens: 50.0,
        compressor: CompressorKind::None,
        projector: ProjectorKind::MLP2X_GELU,
        reduction,
    };
    let fastv = |k| Some(Reduction { method: ReductionMethod::FastV, fastv_layer: k });
    let plain_v = query_cost(&llm, &vision, &spec(64.0, None));
    let plain_p = query_cost(&llm, &vision, &spec(p, None));
    let l = llm.num_hidden_layers;
    for name in ["llm.matmul", "llm.attention"] {
        let at = |k| term(&query_cost(&llm, &vision, &spec(64.0, fastv(k))), name);
        assert_eq!(at(0), term(&plain_v, name), "{name}, K = 0");
        assert!((at(l) - term(&plain_p, name)).abs() <= 1e-9 * term(&plain_p, name), "{name}, K = L");
        // Linear in K: each layer costs the same at a given context.
        let per_layer = (at(l) - at(0)) / l as f64;
        assert!((at(2) - at(0) - 2.0 * per_layer).abs() <= 1e-9 * at(l), "{name}, K = 2");
    }
    // FastV projects all P patch tokens; the decode step attends over Q + P + 1 in the first K layers.
    let k2 = query_cost(&llm, &vision, &spec(64.0, fastv(2)));
    assert_eq!(term(&k2, "projector"), projector(ProjectorKind::MLP2X_GELU, p, 1024.0, llm.hidden_size as f64));
    let extra = 4.0 * llm.hidden_size as f64 * 2.0 * (p - 64.0);
    assert!((k2.decode_per_token - plain_v.decode_per_token - extra).abs() <= 1e-9 * k2.decode_per_token);
}

/// The vision-side reductions are tiny beside the tower they read (the issue's ≤ 3 % overhead in
/// FLOPs), and avgpool adds each patch once.
#[test]
fn vision_side_reductions_cost_little_beside_the_tower() {
    let vision = VisionArch::clip_vit_l14_336();
    let tower = vision_tower(&vision);
    for m in ReductionMethod::ALL.into_iter().filter(|&m| m != ReductionMethod::FastV) {
        for v in [1.0, 16.0, 64.0, 144.0] {
            let (f, formula) = reduction(m, &vision, v);
            assert!(f > 0.0 && f < 0.03 * tower, "{m} at V = {v}: {f:e} ({formula}) vs tower {tower:e}");
        }
    }
    assert_eq!(reduction(ReductionMethod::AvgPool, &vision, 64.0).0, 576.0 * 1024.0);
    // CLS top-k: the mean over 16 heads of the CLS row over the 577 tokens.
    assert_eq!(reduction(ReductionMethod::ClsTopK, &vision, 64.0).0, 16.0 * 577.0);
}

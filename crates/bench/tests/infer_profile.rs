//! The benchmark's shapes and latency profile, against independent numbers: the parameter counts of
//! the released Qwen1.5-0.5B / 1.8B checkpoints (their safetensors totals), and a closed-form profile
//! from synthetic rows.
use bench::infer::{latency_profile, qwen15_config, InferRow};

#[test]
fn qwen15_shapes_have_the_released_parameter_counts() {
    assert_eq!(qwen15_config("0.5b").unwrap().num_parameters(), 463_987_712);
    assert_eq!(qwen15_config("1.8b").unwrap().num_parameters(), 1_836_828_672);
    assert!(qwen15_config("7b").is_err());
}

fn row(v: usize, prefill_ms: f64, compressor: &str) -> InferRow {
    InferRow {
        visual_tokens: v,
        text_tokens: 50,
        compressor: compressor.into(),
        vision_ms: 900.0,
        query_embedding_ms: 0.0,
        compressor_ms: 10.0,
        projector_ms: 2.0,
        prefill_ms,
        ttft_ms: 0.0,
        decode_ms_per_token: 40.0,
        prefill_gflops_per_s: 0.0,
        llm_gflop: 0.0,
    }
}

#[test]
fn latency_profile_is_the_least_squares_slope() {
    // prefill = 3 ms per token per billion exactly, N = 0.5 B.
    let rows: Vec<InferRow> = [(1, "quecc"), (36, "quecc"), (576, "none")]
        .iter()
        .map(|&(v, c)| row(v, 3.0 * 0.5 * (50 + v) as f64, c))
        .collect();
    let p = latency_profile(&rows, 500_000_000, "test").unwrap();
    assert!((p.prefill_ms_per_token_per_billion - 3.0).abs() < 1e-12);
    assert!((p.decode_ms_per_token_per_billion - 80.0).abs() < 1e-12);
    assert_eq!(p.vision_ms, 900.0);
    assert_eq!(p.compressor_ms, 12.0);
    assert!(p.quecc_query_pass);
    assert!(latency_profile(&[], 1, "x").is_err());
}

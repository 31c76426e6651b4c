//! Creating a decoder's random weights directly in bf16 (`bench::infer::random_decoder`) holds the
//! bf16 weights, not an f32 copy: the peak resident set while building one stays well under the f32
//! size. Alone in its test binary, so that no other test allocates in the process meanwhile.
use bench::infer::random_decoder;
use candle_core::{DType, Device};
use models::decoder::DecoderConfig;

#[test]
fn building_a_bf16_decoder_peaks_near_its_bf16_size() {
    // ~46 M parameters: 92 MB in bf16, 184 MB in f32.
    let cfg = DecoderConfig::from_json_str(
        r#"{"model_type": "llama", "vocab_size": 8000, "hidden_size": 512, "intermediate_size": 1376,
            "num_hidden_layers": 12, "num_attention_heads": 8, "num_key_value_heads": 8,
            "max_position_embeddings": 256, "tie_word_embeddings": false}"#,
    )
    .unwrap();
    kernels::memory::release_free_memory();
    let base = kernels::memory::rss_bytes();
    if !kernels::memory::reset_peak_rss() || base.is_none() {
        eprintln!("peak resident set not measurable here (/proc/self/clear_refs): nothing checked");
        return;
    }
    let decoder = random_decoder(&cfg, 1, DType::BF16, &Device::Cpu).unwrap();
    let peak = kernels::memory::peak_rss_bytes().unwrap();
    let grown = peak.saturating_sub(base.unwrap()) as f64;
    let bf16 = decoder.weight_bytes() as f64;
    let f32_bytes = 4.0 * cfg.num_parameters() as f64;
    eprintln!(
        "peak growth {:.1} MB, bf16 weights {:.1} MB, f32 weights {:.1} MB",
        grown / 1e6,
        bf16 / 1e6,
        f32_bytes / 1e6
    );
    assert!(grown >= 0.9 * bf16, "the weights are resident: grew {grown} for {bf16}");
    // Created in f32 first, the peak would be at least the f32 size (2× bf16).
    assert!(grown < 1.15 * bf16, "peak growth {grown} bytes for {bf16} of bf16 weights ({f32_bytes} in f32)");
}

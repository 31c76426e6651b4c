//! The rotary tables cover only the positions used, so a context window far larger than the prompt
//! (Qwen-1.5 says 32 768; a damaged config may say 10¹² or 2⁶⁴ − 1) costs nothing: the same weights
//! give the same logits whatever `max_position_embeddings` says, positions beyond the window are an
//! error, and prompts longer than the first tables grow them.
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use models::decoder::{Decoder, DecoderConfig};

fn config(max_positions: u64) -> DecoderConfig {
    DecoderConfig::from_json_str(&format!(
        r#"{{"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "vocab_size": 50, "hidden_size": 32,
            "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": {max_positions}, "rms_norm_eps": 1e-6, "rope_theta": 10000.0,
            "tie_word_embeddings": true}}"#
    ))
    .unwrap()
}

fn logits(dec: &mut Decoder, ids: &[u32]) -> Vec<f32> {
    dec.clear_kv_cache();
    let t = Tensor::new(ids, &Device::Cpu).unwrap().unsqueeze(0).unwrap();
    dec.forward_ids(&t, 0).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn the_context_window_costs_nothing_until_it_is_used() {
    let dev = Device::Cpu;
    let map = VarMap::new();
    // Same weights for every decoder: the second and later builders read the vars the first made.
    let mut small = Decoder::new(&config(1200), VarBuilder::from_varmap(&map, DType::F32, &dev)).unwrap();
    let mut huge = Decoder::new(&config(1_000_000_000_000), VarBuilder::from_varmap(&map, DType::F32, &dev)).unwrap();
    let mut max = Decoder::new(&config(u64::MAX), VarBuilder::from_varmap(&map, DType::F32, &dev)).unwrap();
    let short: Vec<u32> = (0..36).map(|i| (i * 7 % 50) as u32).collect();
    let want = logits(&mut small, &short);
    assert_eq!(logits(&mut huge, &short), want);
    assert_eq!(logits(&mut max, &short), want);
    // A prompt beyond the first tables (512 positions) grows them; still the same logits.
    let long: Vec<u32> = (0..1100).map(|i| (i * 13 % 50) as u32).collect();
    let want = logits(&mut small, &long);
    assert_eq!(logits(&mut huge, &long), want);
    // Beyond the window: an error, not a panic.
    let too_long: Vec<u32> = vec![1; 1201];
    small.clear_kv_cache();
    let t = Tensor::new(too_long.as_slice(), &dev).unwrap().unsqueeze(0).unwrap();
    assert!(small.forward_ids(&t, 0).unwrap_err().to_string().contains("context window"));
}

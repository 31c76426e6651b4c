//! The bf16-weight inference path (`Decoder::convert_weights(BF16)`, f32 activations) against HF
//! transformers' f32 outputs (`tests/fixtures/make_llm_fixtures.py`): prefill logits, logits at every
//! decode step with the KV cache, and final-norm hidden states.
//!
//! Tolerance: rounding every weight to bf16 (relative error ≤ 2⁻⁹) and, on CPUs with AMX, the
//! activations entering each product, moves the logits and hidden states of these tiny random models by
//! 0.6–1.7 % of the largest |value| (measured on a CPU with the AMX kernels and with
//! `VLM_NO_AMX=1`); 4 % leaves margin for other CPUs' kernels while still failing if, say, a weight
//! block were dropped. The f32 path stays the parity path (1e-4, `decoder_parity.rs`).
use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use models::decoder::{Decoder, DecoderConfig};
use models::Mode;

const TOL: f32 = 4e-2;

fn load(name: &str) -> (Decoder, HashMap<String, Tensor>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llm").join(name);
    let cfg = DecoderConfig::from_file(&dir.join("config.json")).unwrap();
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu).unwrap()
    };
    let mut dec = Decoder::new(&cfg, vb).unwrap();
    let f32_bytes = dec.weight_bytes();
    dec.convert_weights(DType::BF16).unwrap();
    assert_eq!(dec.weight_dtype(), DType::BF16);
    assert!(dec.weight_bytes() < f32_bytes * 6 / 10, "bf16 weights take about half the bytes");
    let exp = candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    (dec, exp)
}

fn rel_err(ours: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(ours.dims(), want.dims(), "shape");
    assert_eq!(ours.dtype(), DType::F32, "activations stay f32");
    let diff = (ours - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    let scale = want.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    diff.to_scalar::<f32>().unwrap() / scale.to_scalar::<f32>().unwrap()
}

fn check(what: &str, ours: &Tensor, want: &Tensor) -> f32 {
    let e = rel_err(ours, want);
    println!("{what}: max relative error {e:.3e}");
    assert!(e <= TOL, "{what}: max relative error {e} > {TOL}");
    e
}

fn bf16_matches_hf(name: &str) {
    let (mut dec, exp) = load(name);
    let prompt = exp["prefill_ids"].to_dtype(DType::U32).unwrap();
    let logits = dec.forward_ids(&prompt, 0).unwrap();
    let e = check(&format!("{name} bf16 prefill logits"), &logits, &exp["prefill_logits"]);
    // Not the f32 path by accident: bf16 rounding must show.
    assert!(e > 1e-5, "{name}: error {e} is f32-level; were the weights converted?");
    let steps = exp["decode_ids"].to_dtype(DType::U32).unwrap();
    for t in 0..steps.dim(1).unwrap() {
        let pos = dec.kv_len();
        let l = dec.forward_ids(&steps.narrow(1, t, 1).unwrap(), pos).unwrap();
        check(
            &format!("{name} bf16 decode step {t}"),
            &l.i((.., 0, ..)).unwrap(),
            &exp["decode_logits"].i((.., t, ..)).unwrap(),
        );
    }
    dec.clear_kv_cache();
    let hidden = dec.forward_hidden(&dec.embed_tokens(&prompt).unwrap()).unwrap();
    check(&format!("{name} bf16 hidden"), &hidden, &exp["prefill_hidden"]);
}

#[test]
fn qwen2_bf16_weights_stay_within_tolerance_of_hf() {
    bf16_matches_hf("qwen2_tiny");
}

#[test]
fn llama_bf16_weights_stay_within_tolerance_of_hf() {
    bf16_matches_hf("llama_tiny");
}

#[test]
fn bf16_weights_refuse_the_differentiable_mode_and_other_dtypes() {
    let (mut dec, exp) = load("qwen2_tiny");
    assert!(dec.convert_weights(DType::F16).is_err());
    dec.set_mode(Mode::Differentiable);
    let prompt = exp["prefill_ids"].to_dtype(DType::U32).unwrap();
    let err = dec.forward_ids(&prompt, 0).unwrap_err().to_string();
    assert!(err.contains("differentiable"), "{err}");
}

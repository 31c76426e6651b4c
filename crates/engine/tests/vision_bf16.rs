//! The CLIP tower with bf16 matrix weights (`ClipVisionTower::convert_weights(BF16)`, f32 activations)
//! against HF transformers' f32 hidden states (`tests/fixtures/make_vision_fixtures.py`: tiny random
//! CLIP, 56 px, patch 7, d = 32, 6 blocks).
//!
//! Tolerance: rounding the block weights to bf16 (and, with AMX, the activations entering each
//! product) moves the hidden states by at most 0.4 % of their largest |value| on this fixture
//! (measured with the AMX kernels and with `VLM_NO_AMX=1`); the bound 2 % leaves margin for other
//! CPUs. The f32 tower stays the parity path (1e-4, `vision_parity.rs`).
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use engine::vision::load_clip_tower;
use models::Mode;

const TOL: f64 = 2e-2;

fn rel_err(ours: &Tensor, reference: &Tensor) -> f64 {
    assert_eq!(ours.dims(), reference.dims(), "shape");
    assert_eq!(ours.dtype(), DType::F32, "activations stay f32");
    let diff = (ours - reference).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    let scale = reference.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    diff.to_scalar::<f32>().unwrap() as f64 / scale.to_scalar::<f32>().unwrap() as f64
}

#[test]
fn bf16_tower_stays_within_tolerance_of_hf() {
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vision");
    let io = candle_core::safetensors::load(fx.join("io.safetensors"), &Device::Cpu).unwrap();
    let mut tower = load_clip_tower(&fx.join("clip"), 6, Mode::Inference, &Device::Cpu).unwrap();
    tower.convert_weights(DType::BF16).unwrap();
    let hs = tower.hidden_states(&io["pixels"], 6).unwrap();
    let mut worst: f64 = 0.0;
    for (i, h) in hs.iter().enumerate() {
        let e = rel_err(h, &io[&format!("hidden_state_{i}")]);
        println!("bf16 hidden_state_{i}: max rel err {e:.2e}");
        assert!(e <= TOL, "hidden state {i}: {e:.3e} > {TOL}");
        worst = worst.max(e);
    }
    // The embeddings (state 0) are f32; the blocks must show bf16 rounding, or nothing was converted.
    assert!(rel_err(&hs[0], &io["hidden_state_0"]) <= 1e-4);
    assert!(worst > 1e-5, "error {worst} is f32-level; were the weights converted?");
}

fn vb(file: &str) -> candle_nn::VarBuilder<'static> {
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vision").join(file);
    engine::vision::var_builder_from_files(&[fx], DType::F32, &Device::Cpu).unwrap()
}

/// QueCC (query on) and TokenPacker, each followed by its projector, with bf16 matrix weights
/// (`Compressor::convert_weights`, `Projector::convert_weights`) against HF/PyTorch's f32 outputs on the
/// fixture's f32 features: the rounding must show (the weights were converted) and stay within 2 %.
#[test]
fn bf16_compressors_and_projectors_stay_within_tolerance_of_reference() {
    use models::compress::{Compressor, Quecc, QueccConfig, TokenPacker, TokenPackerConfig};
    use models::projector::{Projector, ProjectorKind, ProjectorLayout};
    use models::vision::VisionFeatures;
    let fx = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vision");
    let io = candle_core::safetensors::load(fx.join("io.safetensors"), &Device::Cpu).unwrap();
    let feats = VisionFeatures { single: io["single"].clone(), multi: Some(io["multi"].clone()), grid: 8 };
    let (d, h) = (32, 48);

    let qvb = vb("llava_quecc_k4_s4.safetensors");
    let cfg = QueccConfig { kernel: 4, stride: 4, ..QueccConfig::new(d, 8, h) };
    let mut quecc = Quecc::new(&cfg, Mode::Inference, qvb.pp("model.mm_projector.0")).unwrap();
    let mut proj = Projector::new(
        ProjectorKind::parse("mlp2x_gelu").unwrap(),
        d,
        h,
        ProjectorLayout::SequentialAfterCompressor,
        qvb.pp("model.mm_projector"),
    )
    .unwrap();
    quecc.convert_weights(DType::BF16.into()).unwrap();
    proj.convert_weights(DType::BF16).unwrap();
    let z = quecc.compress(&feats, Some(&io["query"])).unwrap();
    let ez = rel_err(&z, &io["quecc_k4_s4"]);
    let ep = rel_err(&proj.forward(&z).unwrap(), &io["quecc_k4_s4_projected"]);
    println!("bf16 QueCC: {ez:.2e}, + projector {ep:.2e}");
    assert!(ez <= TOL && ep <= TOL, "QueCC {ez:.3e} / projected {ep:.3e} > {TOL}");
    assert!(ez > 1e-5, "QueCC error {ez} is f32-level; were the weights converted?");

    let tvb = vb("tokenpacker_v4.safetensors");
    let cfg = TokenPackerConfig { visual_tokens: 4, ..TokenPackerConfig::new(d, 8) };
    let mut tp = TokenPacker::new(&cfg, Mode::Inference, tvb.pp("model.mm_projector")).unwrap();
    tp.convert_weights(DType::BF16.into()).unwrap();
    let z = tp.compress(&feats, None).unwrap();
    let et = rel_err(&z, &io["tokenpacker_v4"]);
    println!("bf16 TokenPacker: {et:.2e}");
    assert!(et <= TOL, "TokenPacker {et:.3e} > {TOL}");
    assert!(et > 1e-5, "TokenPacker error {et} is f32-level; were the weights converted?");
}

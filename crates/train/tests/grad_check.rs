//! Gradients are right: candle's backward pass through the training modules (built in differentiable
//! mode from a `VarMap`, f64) equals central finite differences to 1e-4 relative, and every trainable
//! tensor receives a non-zero gradient. Independent reference: the finite difference of the loss.
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use models::decoder::{Decoder, DecoderConfig};
use models::projector::{Projector, ProjectorKind, ProjectorLayout};
use models::vision::VisionFeatures;
use models::Mode;
use synth::Family;
use train::batch::{collate, ConversationEncoder};
use train::model::{CompressorKind, TrainableVlm, VlmArch};

fn var(map: &VarMap, name: &str) -> Var {
    map.data().lock().unwrap().get(name).unwrap_or_else(|| panic!("no var {name}")).clone()
}

/// Checks every var has a non-zero gradient, and for `names` compares backward with a central
/// difference at the element of largest gradient.
fn check(map: &VarMap, loss: &dyn Fn() -> Tensor, names: &[&str]) {
    let grads = loss().backward().unwrap();
    for (name, v) in map.data().lock().unwrap().iter() {
        let g = grads.get(v.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
        let s = g.abs().unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap();
        assert!(s.is_finite() && s > 0.0, "{name}: gradient sum {s}");
    }
    for name in names {
        let v = var(map, name);
        let g: Vec<f64> = grads.get(v.as_tensor()).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let k = (0..g.len()).max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs())).unwrap();
        let orig = v.as_tensor().copy().unwrap();
        let eps = 1e-5;
        let bump = |delta: f64| -> f64 {
            let mut d = vec![0f64; g.len()];
            d[k] = delta;
            v.set(&(&orig + Tensor::from_vec(d, orig.shape(), orig.device()).unwrap()).unwrap()).unwrap();
            loss().to_scalar::<f64>().unwrap()
        };
        let numeric = (bump(eps) - bump(-eps)) / (2.0 * eps);
        v.set(&orig).unwrap();
        let rel = (g[k] - numeric).abs() / numeric.abs().max(1e-12);
        println!("{name}[{k}]: backward {:.10e}, finite difference {numeric:.10e}, rel {rel:.2e}", g[k]);
        assert!(rel <= 1e-4, "{name}: relative error {rel}");
    }
}

fn tiny_llm(vocab: usize, layers: usize) -> DecoderConfig {
    DecoderConfig::from_json_str(&format!(
        r#"{{"model_type": "qwen2", "vocab_size": {vocab}, "hidden_size": 16, "intermediate_size": 24,
            "num_hidden_layers": {layers}, "num_attention_heads": 2, "num_key_value_heads": 1,
            "max_position_embeddings": 128, "tie_word_embeddings": true, "eos_token_id": 4}}"#
    ))
    .unwrap()
}

#[test]
fn projector_gradients_match_finite_differences() {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let dev = Device::Cpu;
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F64, &dev);
    let p = Projector::new(ProjectorKind::MlpGelu { depth: 2 }, 6, 8, ProjectorLayout::Sequential, vb).unwrap();
    let x = kernels::random::randn(&mut rng, 1.0, (2, 3, 6), candle_core::DType::F64, &dev).unwrap();
    let probe = kernels::random::randn(&mut rng, 1.0, (2, 3, 8), candle_core::DType::F64, &dev).unwrap();
    check(
        &map,
        &|| p.forward(&x).unwrap().mul(&probe).unwrap().sum_all().unwrap(),
        &["0.weight", "0.bias", "2.weight"],
    );
}

#[test]
fn decoder_block_gradients_match_finite_differences() {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(2);
    let dev = Device::Cpu;
    let map = VarMap::new();
    let vb = VarBuilder::from_varmap(&map, DType::F64, &dev);
    let mut dec = Decoder::new(&tiny_llm(11, 1), vb).unwrap();
    dec.set_mode(Mode::Differentiable);
    let ids = Tensor::new(&[[1u32, 5, 7, 2, 9], [3, 3, 10, 0, 4]], &dev).unwrap();
    let probe = kernels::random::randn(&mut rng, 1.0, (2, 5, 16), candle_core::DType::F64, &dev).unwrap();
    // embed_tokens.weight is also in the VarMap and gets its gradient through the block.
    let loss = || dec.forward_hidden(&dec.embed_tokens(&ids).unwrap()).unwrap().mul(&probe).unwrap().sum_all().unwrap();
    check(
        &map,
        &loss,
        &[
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.0.self_attn.k_proj.bias",
            "model.layers.0.self_attn.v_proj.weight",
            "model.layers.0.self_attn.o_proj.weight",
            "model.layers.0.mlp.gate_proj.weight",
            "model.layers.0.mlp.down_proj.weight",
            "model.layers.0.input_layernorm.weight",
            "model.norm.weight",
        ],
    );
}

/// The whole VLM from the answer-token loss back to the compressor's first weights.
fn whole_vlm(kind: CompressorKind, names: &[&str]) {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
    let dev = Device::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let tok = dir.path().join("tokenizer.json");
    synth::save_tokenizer(&synth::build_tokenizer(&[]).unwrap(), &tok).unwrap();
    let enc = ConversationEncoder::new(&tok).unwrap();
    let (g, d) = (4, 8);
    let arch =
        VlmArch { llm: tiny_llm(enc.vocab_size(), 2), compressor: kind, visual_tokens: 4, vision_dim: d, grid: g };
    let map = VarMap::new();
    let model = TrainableVlm::new(&arch, true, VarBuilder::from_varmap(&map, DType::F64, &dev)).unwrap();
    let ex = [
        enc.example(0, "What is the shape of the red object?", "circle", Family::Shape).unwrap(),
        enc.example(1, "How many objects have the same shape as the blue object?", "4", Family::Count).unwrap(),
    ];
    let batch = collate(&ex.iter().collect::<Vec<_>>(), 4, &dev).unwrap();
    let feats = VisionFeatures {
        single: kernels::random::randn(&mut rng, 1.0, (2, g * g, d), candle_core::DType::F64, &dev).unwrap(),
        multi: Some(kernels::random::randn(&mut rng, 1.0, (2, g * g, 4 * d), candle_core::DType::F64, &dev).unwrap()),
        grid: g,
    };
    check(&map, &|| model.loss(&batch, &feats).unwrap(), names);
}

#[test]
fn whole_vlm_quecc_gradients_reach_the_compressor() {
    // The query embedding is detached (the authors compute it without gradient), so the finite
    // difference is taken on compressor and projector weights only (perturbing LLM weights would
    // also move the query).
    whole_vlm(
        CompressorKind::Quecc,
        &[
            "model.mm_projector.0.text_projection.0.weight",
            "model.mm_projector.0.q_proj.0.weight",
            "model.mm_projector.0.k_proj.0.weight",
            "model.mm_projector.0.q_downsample.weight",
            "model.mm_projector.0.clip_attn.in_proj_weight",
            "model.mm_projector.1.weight",
            "model.mm_projector.3.weight",
        ],
    );
}

#[test]
fn whole_vlm_tokenpacker_gradients_match_including_llm() {
    whole_vlm(
        CompressorKind::Tokenpacker,
        &[
            "model.mm_projector.q_proj_1.weight",
            "model.mm_projector.k_proj_1.0.weight",
            "model.mm_projector.mlp.0.weight",
            "model.embed_tokens.weight",
            "model.layers.0.self_attn.q_proj.weight",
            "model.layers.1.mlp.up_proj.weight",
        ],
    );
}

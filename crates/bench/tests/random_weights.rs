//! The benchmark's seeded random weights (`bench::infer::RandomWeights`, `random_decoder`): a decoder
//! whose matrices are created directly in bf16 is the decoder that creating it in f32 and converting
//! gives (same logits, bit for bit), it loads and runs (prefill, FastV prefill, decode), the values
//! follow candle's init hints and the seed, and the Vicuna-7B shape is the released checkpoint's.
use bench::infer::{llm_config, llm_config_json, random_decoder, RandomWeights, LLM_SHAPES};
use candle_core::{DType, Device, Tensor};
use models::decoder::{DecoderConfig, FastV};

/// A tiny Llama (the Vicuna family) whose widths are not multiples of the kernels' blocks.
fn tiny_llama() -> DecoderConfig {
    DecoderConfig::from_json_str(
        r#"{"model_type": "llama", "vocab_size": 250, "hidden_size": 72, "intermediate_size": 184,
            "num_hidden_layers": 3, "num_attention_heads": 6, "num_key_value_heads": 6,
            "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "tie_word_embeddings": false}"#,
    )
    .unwrap()
}

fn ids(n: usize) -> Tensor {
    let v: Vec<u32> = (0..n as u32).map(|i| (i * 37 + 11) % 250).collect();
    Tensor::from_vec(v, (1, n), &Device::Cpu).unwrap()
}

fn logits(cfg: &DecoderConfig, seed: u64, dtype: DType) -> Vec<f32> {
    let mut d = random_decoder(cfg, seed, dtype, &Device::Cpu).unwrap();
    d.forward_ids(&ids(9), 0).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn bf16_created_directly_equals_f32_created_then_converted() {
    let cfg = tiny_llama();
    let dev = Device::Cpu;
    let mut direct = random_decoder(&cfg, 5, DType::BF16, &dev).unwrap();
    let mut converted = random_decoder(&cfg, 5, DType::F32, &dev).unwrap();
    assert_eq!(converted.weight_dtype(), DType::F32);
    converted.convert_weights(DType::BF16).unwrap();
    assert_eq!(direct.weight_dtype(), DType::BF16);
    assert_eq!(direct.dtype(), DType::F32, "activations stay f32");
    assert_eq!(direct.weight_bytes(), converted.weight_bytes());
    // bf16 matrices (2 bytes) and f32 norms: the decoder's own count of what it holds.
    let matrices = 2 * 250 * 72 + 3 * (4 * 72 * 72 + 3 * 72 * 184);
    assert_eq!(direct.weight_bytes(), 2 * matrices + 4 * (cfg.num_parameters() - matrices));
    let a = direct.forward_ids(&ids(9), 0).unwrap();
    let b = converted.forward_ids(&ids(9), 0).unwrap();
    assert_eq!(a.dims(), &[1, 9, 250]);
    let (a, b): (Vec<f32>, Vec<f32>) =
        (a.flatten_all().unwrap().to_vec1().unwrap(), b.flatten_all().unwrap().to_vec1().unwrap());
    assert!(a.iter().all(|x| x.is_finite()));
    assert_eq!(a, b, "the same weights, the same kernels: identical logits");
    // bf16 rounding of the same draws: close to the f32 model's logits, not equal.
    let f = logits(&cfg, 5, DType::F32);
    let scale = f.iter().fold(0f32, |m, x| m.max(x.abs()));
    let diff = a.iter().zip(&f).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
    assert!(diff > 0.0 && diff < 0.05 * scale, "bf16 vs f32: max |Δ| {diff} of {scale}");
}

#[test]
fn the_bf16_decoder_prefills_with_fastv_and_decodes() {
    let cfg = tiny_llama();
    let dev = Device::Cpu;
    let mut d = random_decoder(&cfg, 3, DType::BF16, &dev).unwrap();
    let embeds = d.embed_tokens(&ids(20)).unwrap();
    let fastv = FastV { layer: 1, image_start: 2, image_len: 16, keep: 4 };
    let (last, kept) = d.prefill_fastv(&embeds, &fastv).unwrap();
    assert_eq!(kept.len(), 4);
    assert_eq!(d.kv_len(), 20);
    let first = d.lm_head(&last).unwrap();
    assert_eq!(first.dims(), &[1, 1, 250]);
    let step = d.embed_tokens(&Tensor::from_vec(vec![7u32], (1, 1), &dev).unwrap()).unwrap();
    let hidden = d.forward_embeds(&step, 20).unwrap();
    let next = d.lm_head(&hidden).unwrap();
    let v: Vec<f32> = next.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(d.kv_len(), 21);
    assert!(v.iter().all(|x| x.is_finite()) && v.iter().any(|x| *x != 0.0));
}

#[test]
fn weights_are_seeded_per_name_and_follow_the_init_hints() {
    let cfg = tiny_llama();
    assert_eq!(logits(&cfg, 9, DType::BF16), logits(&cfg, 9, DType::BF16));
    assert_ne!(logits(&cfg, 9, DType::BF16), logits(&cfg, 10, DType::BF16));
    let dev = Device::Cpu;
    let get = |order: &[&str]| -> Vec<Vec<f32>> {
        let vb = RandomWeights::new(4, DType::BF16).var_builder(&dev);
        let mut out: Vec<(String, Vec<f32>)> = order
            .iter()
            .map(|n| {
                let t = vb.get_with_hints((300, 400), n, candle_nn::init::DEFAULT_KAIMING_NORMAL).unwrap();
                assert_eq!(t.dtype(), DType::BF16, "a matrix is created in bf16");
                (n.to_string(), t.to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap())
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out.into_iter().map(|(_, v)| v).collect()
    };
    let (ab, ba) = (get(&["a", "b"]), get(&["b", "a"]));
    assert_eq!(ab, ba, "values depend on the name, not on the order of creation");
    assert_ne!(ab[0], ab[1]);
    // Kaiming normal, fan-in 400, ReLU gain: N(0, 2/400).
    let w = &ab[0];
    let n = w.len() as f64;
    let mean = w.iter().map(|&x| x as f64).sum::<f64>() / n;
    let std = (w.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    let want = (2.0f64 / 400.0).sqrt();
    assert!(mean.abs() < 0.02 * want && (std / want - 1.0).abs() < 0.02, "mean {mean}, std {std} vs {want}");
    let vb = RandomWeights::new(4, DType::BF16).var_builder(&dev);
    let norm = vb.get_with_hints(72, "norm.weight", candle_nn::Init::Const(1.0)).unwrap();
    assert_eq!(norm.dtype(), DType::F32, "a vector keeps the builder's dtype");
    assert!(norm.to_vec1::<f32>().unwrap().iter().all(|&x| x == 1.0));
    let bias = vb.get_with_hints(5000, "bias", candle_nn::Init::Uniform { lo: -0.5, up: 0.25 }).unwrap();
    let b: Vec<f32> = bias.to_vec1().unwrap();
    assert!(b.iter().all(|&x| (-0.5..=0.25).contains(&x)));
    assert!(b.iter().any(|&x| x < -0.45) && b.iter().any(|&x| x > 0.2));
}

#[test]
fn vicuna_7b_is_the_released_llava_1_5_7b_llm() {
    assert_eq!(LLM_SHAPES, ["0.5b", "1.8b", "vicuna-7b"]);
    let cfg = llm_config("vicuna-7b").unwrap();
    // lmsys/vicuna-7b-v1.5 (= Llama-2-7B's shape): 6 738 415 616 parameters in its safetensors.
    assert_eq!(cfg.num_parameters(), 6_738_415_616);
    assert_eq!(cfg.architecture, models::decoder::Architecture::Llama);
    assert_eq!((cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads), (4096, 32, 32));
    assert_eq!((cfg.intermediate_size, cfg.vocab_size, cfg.max_position_embeddings), (11008, 32000, 4096));
    assert!(!cfg.tie_word_embeddings && !cfg.qkv_bias);
    assert_eq!(cfg.rms_norm_eps, 1e-5);
    assert_eq!(llm_config_json("vicuna-7b").unwrap()["model_type"], "llama");
    assert_eq!(llm_config("0.5b").unwrap(), bench::infer::qwen15_config("0.5b").unwrap());
    assert!(llm_config("7b").is_err());
}

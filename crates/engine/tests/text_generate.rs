//! Templates, LLaVA `<image>` tokenisation, the visual splice and generation, against the outputs of
//! `tests/fixtures/make_llm_fixtures.py` (Python `tokenizers` + HF `generate`).
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use engine::generate::{generate, GenerateConfig, StopReason};
use engine::text::{input_embeddings, Template, TextTokenizer, TokenStream, IMAGE_TOKEN_INDEX};
use engine::Error;
use models::decoder::{Decoder, DecoderConfig};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/llm").join(name)
}

fn decoder(name: &str) -> Decoder {
    let dir = fixture(name);
    let cfg = DecoderConfig::from_file(&dir.join("config.json")).unwrap();
    let vb = unsafe {
        VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu).unwrap()
    };
    Decoder::new(&cfg, vb).unwrap()
}

fn expected_json(name: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("expected.json")).unwrap()).unwrap()
}

fn expected(name: &str, key: &str) -> Tensor {
    candle_core::safetensors::load(fixture(name).join("expected.safetensors"), &Device::Cpu)
        .unwrap()
        .remove(key)
        .unwrap()
}

fn template_matches_llava(name: &str, template: Template) {
    let exp = expected_json(name);
    let tok = TextTokenizer::from_file(&fixture(name).join("tokenizer.json")).unwrap();
    let question = exp["question"].as_str().unwrap();
    let prompt = template.prompt(question, true);
    assert_eq!(prompt, exp["template_prompt"].as_str().unwrap());
    let got = tok.tokenize_with_image(&prompt).unwrap();
    let want: Vec<i64> = exp["template_ids"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap()).collect();
    assert_eq!(got.ids, want);
    assert_eq!(got.image_count(), 1);
    let q: Vec<u32> = exp["question_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    assert_eq!(tok.tokenize_query(question).unwrap(), q);
    assert!(!tok.stop_token_ids(template).unwrap().is_empty());
}

#[test]
fn vicuna_v1_prompt_and_image_tokens_match_llava() {
    template_matches_llava("llama_tiny", Template::VicunaV1);
}

#[test]
fn qwen_1_5_prompt_and_image_tokens_match_llava() {
    template_matches_llava("qwen2_tiny", Template::Qwen15);
}

#[test]
fn vicuna_v1_prompt_is_llava_conv_vicuna_v1() {
    // LLaVA conversation.py conv_vicuna_v1 with sep " " and the image first.
    let p = Template::VicunaV1.prompt("Q?", true);
    assert_eq!(
        p,
        "A chat between a curious user and an artificial intelligence assistant. The assistant gives \
helpful, detailed, and polite answers to the user's questions. USER: <image>\nQ? ASSISTANT:"
    );
    assert_eq!(
        Template::Qwen15.prompt("Q?", false),
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nQ?<|im_end|>\n<|im_start|>assistant\n"
    );
    assert!(Template::from_name("llama_3").is_err());
}

#[test]
fn tokenizer_without_template_tokens_is_an_error() {
    let tok = TextTokenizer::from_file(&fixture("llama_tiny").join("tokenizer.json")).unwrap();
    match tok.stop_token_ids(Template::Qwen15) {
        Err(Error::Tokenizer { msg, .. }) => assert!(msg.contains("<|im_start|>"), "{msg}"),
        other => panic!("expected a tokenizer error, got {other:?}"),
    }
    let tok = TextTokenizer::from_file(&fixture("qwen2_tiny").join("tokenizer.json")).unwrap();
    assert!(matches!(tok.stop_token_ids(Template::VicunaV1), Err(Error::Tokenizer { .. })));
}

#[test]
fn corrupt_or_missing_tokenizer_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("tokenizer.json");
    std::fs::write(&p, b"{\"model\": 3").unwrap();
    assert!(matches!(TextTokenizer::from_file(&p), Err(Error::Tokenizer { .. })));
    assert!(matches!(TextTokenizer::from_file(&dir.path().join("nope.json")), Err(Error::Io { .. })));
}

#[test]
fn visual_embeddings_are_spliced_at_the_image_marker() {
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(1);
    let dec = decoder("llama_tiny");
    let tok = TextTokenizer::from_file(&fixture("llama_tiny").join("tokenizer.json")).unwrap();
    let prompt = tok.tokenize_with_image(&Template::VicunaV1.prompt("What is this?", true)).unwrap();
    let h = dec.config().hidden_size;
    let v = 5;
    let visual = kernels::random::randn(&mut rng, 1.0, (1, v, h), candle_core::DType::F32, &Device::Cpu).unwrap();
    let e = input_embeddings(&dec, &prompt, Some(&visual)).unwrap();
    assert_eq!(e.dims(), &[1, prompt.input_len(v), h]);
    let at = prompt.image_positions(v)[0];
    let marker = prompt.ids.iter().position(|&i| i == IMAGE_TOKEN_INDEX).unwrap();
    assert_eq!(at, marker);
    let got = e.i((0, at..at + v)).unwrap();
    assert_eq!(got.to_vec2::<f32>().unwrap(), visual.i(0).unwrap().to_vec2::<f32>().unwrap());
    // Text after the image: embeddings of the ids after the marker.
    let after: Vec<u32> = prompt.ids[marker + 1..].iter().map(|&i| i as u32).collect();
    let want = dec.embed_tokens(&Tensor::new(after.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap()).unwrap();
    let got = e.i((.., at + v..)).unwrap();
    assert_eq!(got.to_vec3::<f32>().unwrap(), want.to_vec3::<f32>().unwrap());
    // Wrong number of images, wrong width.
    assert!(matches!(input_embeddings(&dec, &prompt, None), Err(Error::Invalid(_))));
    let bad = Tensor::zeros((1, v, h + 1), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(input_embeddings(&dec, &prompt, Some(&bad)), Err(Error::Shape { .. })));
}

#[test]
fn prompt_longer_than_context_window_is_an_error() {
    let dec = decoder("llama_tiny"); // max_position_embeddings = 128
    let tok = TextTokenizer::from_file(&fixture("llama_tiny").join("tokenizer.json")).unwrap();
    let prompt = tok.tokenize_with_image(&Template::VicunaV1.prompt("What is this?", true)).unwrap();
    let h = dec.config().hidden_size;
    let visual = Tensor::zeros((1, 576, h), DType::F32, &Device::Cpu).unwrap();
    match input_embeddings(&dec, &prompt, Some(&visual)) {
        Err(Error::ContextWindow { len, max }) => {
            assert_eq!(max, 128);
            assert_eq!(len, prompt.text_len() + 576);
        }
        other => panic!("expected ContextWindow, got {other:?}"),
    }
    // The decoder itself refuses too.
    let mut dec = dec;
    let e = Tensor::zeros((1, 129, h), DType::F32, &Device::Cpu).unwrap();
    assert!(matches!(dec.forward_embeds(&e, 0), Err(Error::ContextWindow { .. })));
}

fn hf_greedy(name: &str) -> (Tensor, Vec<u32>) {
    let prompt = expected(name, "generate_prompt_ids").to_dtype(DType::U32).unwrap();
    let want = expected(name, "generate_ids").to_dtype(DType::U32).unwrap().i(0).unwrap().to_vec1().unwrap();
    (prompt, want)
}

fn generate_matches_hf(name: &str) {
    let mut dec = decoder(name);
    let (prompt, want) = hf_greedy(name);
    let embeds = dec.embed_tokens(&prompt).unwrap();
    let cfg = GenerateConfig { max_new_tokens: want.len(), ..Default::default() };
    let mut streamed = vec![];
    let g = generate(&mut dec, &embeds, &cfg, |t| {
        streamed.push(t);
        Ok(())
    })
    .unwrap();
    assert_eq!(g.tokens, want, "{name}: greedy ids differ from HF generate");
    assert_eq!(streamed, want);
    assert_eq!(g.stop, StopReason::MaxNewTokens);
    assert_eq!(g.timings.prompt_tokens, prompt.dim(1).unwrap());
    assert_eq!(g.timings.decode_tokens, want.len() - 1);
    assert!(g.timings.ttft_ms >= g.timings.prefill_ms);

    // Stop token: generation ends before the first occurrence of HF's k-th token.
    let stop = want[5];
    let first = want.iter().position(|&t| t == stop).unwrap();
    let cfg = GenerateConfig { max_new_tokens: 100, stop_token_ids: vec![stop], ..Default::default() };
    let g = generate(&mut dec, &embeds, &cfg, |_| Ok(())).unwrap();
    assert_eq!(g.tokens, want[..first].to_vec());
    assert_eq!(g.stop, StopReason::StopToken);

    // Nucleus sampling with a tiny top_p keeps only the most likely token: HF's greedy ids again.
    let cfg =
        GenerateConfig { max_new_tokens: want.len(), temperature: 0.7, top_p: 1e-9, seed: 7, ..Default::default() };
    let g = generate(&mut dec, &embeds, &cfg, |_| Ok(())).unwrap();
    assert_eq!(g.tokens, want);

    // Sampling is reproducible with a seed.
    let cfg = GenerateConfig { max_new_tokens: 12, temperature: 1.0, top_p: 0.9, seed: 42, ..Default::default() };
    let a = generate(&mut dec, &embeds, &cfg, |_| Ok(())).unwrap();
    let b = generate(&mut dec, &embeds, &cfg, |_| Ok(())).unwrap();
    assert_eq!(a.tokens, b.tokens);
    assert!(a.tokens.iter().all(|&t| (t as usize) < dec.config().vocab_size));
}

#[test]
fn qwen2_generate_matches_hf_greedy() {
    generate_matches_hf("qwen2_tiny");
}

#[test]
fn llama_generate_matches_hf_greedy() {
    generate_matches_hf("llama_tiny");
}

#[test]
fn bad_sampler_settings_are_errors() {
    let mut dec = decoder("qwen2_tiny");
    let e = Tensor::zeros((1, 3, 64), DType::F32, &Device::Cpu).unwrap();
    for cfg in [
        GenerateConfig { temperature: -1.0, ..Default::default() },
        GenerateConfig { top_p: 0.0, ..Default::default() },
        GenerateConfig { temperature: f64::NAN, ..Default::default() },
    ] {
        assert!(matches!(generate(&mut dec, &e, &cfg, |_| Ok(())), Err(Error::Invalid(_))));
    }
}

#[test]
fn token_stream_reassembles_the_text() {
    let tok = TextTokenizer::from_file(&fixture("qwen2_tiny").join("tokenizer.json")).unwrap();
    let text = "What color is the large cylinder?";
    let ids = tok.encode(text, false).unwrap();
    let mut s = TokenStream::new(tok.clone());
    let mut out = String::new();
    for id in ids {
        out.push_str(&s.push(id).unwrap());
    }
    assert_eq!(out, text);
}

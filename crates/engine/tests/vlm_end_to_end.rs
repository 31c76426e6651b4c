//! End-to-end parity of the assembled VLM ([`engine::model::Vlm`]) against PyTorch / HF transformers
//! (`tests/fixtures/make_vlm_fixtures.py`) on the committed photograph `images/chelsea.png`:
//! a tiny LLaVA-layout QueCC + Qwen2 checkpoint (embedded CLIP tower) and a tiny plain LLaVA-1.5
//! Llama checkpoint (CLIP tower in a local directory). Relative error = max|ours − ref| / max|ref|,
//! bound 1e-4 in f32; greedy ids identical. Also the typed errors of bad checkpoints and inputs.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use engine::generate::StopReason;
use engine::model::{AnswerOptions, CompressorInfo, Vlm};
use engine::text::Template;
use engine::Error;

const TOL: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vlm").join(name)
}

fn image() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/images/chelsea.png")
}

const QUESTION: &str = "What is shown in the image?";

fn expected(name: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixture(name).join("expected.safetensors"), &Device::Cpu).unwrap()
}

fn rel_err(ours: &Tensor, want: &Tensor) -> f32 {
    assert_eq!(ours.dims(), want.dims(), "shape");
    let diff = (ours - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    let scale = want.abs().unwrap().flatten_all().unwrap().max(0).unwrap();
    diff.to_scalar::<f32>().unwrap() / scale.to_scalar::<f32>().unwrap()
}

fn check(what: &str, ours: &Tensor, want: &Tensor) {
    let e = rel_err(&ours.to_dtype(DType::F32).unwrap(), want);
    println!("{what}: max relative error {e:.3e}");
    assert!(e <= TOL, "{what}: max relative error {e} > {TOL}");
}

fn ids(t: &Tensor) -> Vec<i64> {
    t.flatten_all().unwrap().to_vec1::<i64>().unwrap()
}

fn load(name: &str, over: Option<&Path>) -> Vlm {
    Vlm::load(&fixture(name), over, DType::F32, &Device::Cpu).unwrap()
}

/// Every stage against the reference, then the whole generation.
fn parity(name: &str, vlm: &mut Vlm) {
    let exp = expected(name);
    let img = engine::vision::load_image(&image()).unwrap();
    let pixels = vlm.preprocess(&img).unwrap();
    check(&format!("{name} pixels"), &pixels, &exp["pixels"]);
    // Later stages start from the reference pixels so that each comparison is of one stage.
    let pixels = &exp["pixels"];
    let query = if let Some(want) = exp.get("query_embedding") {
        let q = vlm.query_embedding(QUESTION).unwrap();
        check(&format!("{name} query embedding"), &q, want);
        let qids: Vec<i64> = vlm.tokenizer().tokenize_query(QUESTION).unwrap().iter().map(|&i| i as i64).collect();
        assert_eq!(qids, ids(&exp["query_ids"]), "query token ids");
        Some(q)
    } else {
        None
    };
    let compressed = vlm.compress(pixels, query.as_ref()).unwrap();
    check(&format!("{name} compressed visual tokens"), &compressed, &exp["compressed"]);
    let visual = vlm.project(&compressed).unwrap();
    check(&format!("{name} projected visual tokens"), &visual, &exp["visual"]);
    let visual_from_pixels = vlm.visual_embeddings(pixels, QUESTION).unwrap();
    check(&format!("{name} visual_embeddings"), &visual_from_pixels, &exp["visual"]);

    let prompt = vlm.prompt_tokens(QUESTION).unwrap();
    assert_eq!(prompt.ids, ids(&exp["prompt_ids"]), "{name} templated prompt ids");
    let embeds = vlm.input_embeddings(QUESTION, &visual).unwrap();
    let hidden = vlm.decoder().forward_hidden(&embeds).unwrap();
    let logits = vlm.decoder().lm_head(&hidden).unwrap();
    check(&format!("{name} prefill logits (Q + V = {})", embeds.dim(1).unwrap()), &logits, &exp["prefill_logits"]);

    let mut streamed = String::new();
    let opts = AnswerOptions { max_new_tokens: 12, ..Default::default() };
    let ans = vlm
        .answer(&image(), QUESTION, &opts, |s| {
            streamed.push_str(s);
            Ok(())
        })
        .unwrap();
    let mut got: Vec<i64> = ans.tokens.iter().map(|&t| t as i64).collect();
    if ans.stop == StopReason::StopToken {
        // HF's output includes the eos token; ours stops before it.
        let want = ids(&exp["generate_ids"]);
        assert!(vlm.stop_token_ids().contains(&(*want.last().unwrap() as u32)), "HF stopped on a stop token too");
        got.push(*want.last().unwrap());
    }
    println!("{name} greedy ids {got:?}; answer {:?}; {}", ans.text, ans.timings);
    assert_eq!(got, ids(&exp["generate_ids"]), "{name} greedy ids");
    assert_eq!(streamed, ans.text, "streamed text is the answer");
    let t = ans.timings;
    assert_eq!(t.visual_tokens, vlm.visual_tokens());
    assert_eq!(t.input_len(), prompt.input_len(vlm.visual_tokens()));
    assert_eq!(t.input_len(), embeds.dim(1).unwrap());
    assert!(t.ttft_ms >= t.prefill_ms + t.vision_ms);
}

#[test]
fn quecc_qwen2_matches_pytorch_end_to_end() {
    let mut vlm = load("quecc_qwen2", None);
    assert_eq!(vlm.template(), Template::Qwen15);
    assert_eq!(vlm.compressor_info(), CompressorInfo::Quecc { kernel: 4, stride: 4 });
    assert_eq!(vlm.visual_tokens(), 4);
    assert_eq!(vlm.feature_layers().multi, vec![2, 3, 4, 5]);
    parity("quecc_qwen2", &mut vlm);
}

#[test]
fn plain_llava15_llama_matches_pytorch_end_to_end() {
    let mut vlm = load("llava15_llama", None);
    assert_eq!(vlm.template(), Template::VicunaV1);
    assert_eq!(vlm.compressor_info(), CompressorInfo::None);
    assert_eq!(vlm.visual_tokens(), 64);
    assert!(vlm.feature_layers().multi.is_empty(), "no multi-level features without a compressor");
    parity("llava15_llama", &mut vlm);
}

#[test]
fn vision_tower_override_directory_is_used() {
    // The plain checkpoint's tower given explicitly; and the QueCC checkpoint with the plain one's
    // tower, which must change the visual tokens.
    let clip = fixture("llava15_llama").join("clip");
    let vlm = load("llava15_llama", Some(&clip));
    let exp = expected("llava15_llama");
    check("override tower", &vlm.compress(&exp["pixels"], None).unwrap(), &exp["compressed"]);
    let q = load("quecc_qwen2", Some(&clip));
    let qe = expected("quecc_qwen2");
    let z = q.compress(&qe["pixels"], Some(&qe["query_embedding"])).unwrap();
    assert!(rel_err(&z, &qe["compressed"]) > 1e-2, "a different tower must give different tokens");
}

/// Copies a fixture checkpoint to a temporary directory for corruption.
fn copy_fixture(name: &str) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(fixture(name)).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, tmp.path().join(p.file_name().unwrap())).unwrap();
        }
    }
    tmp
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Map<String, serde_json::Value>)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(v.as_object_mut().unwrap());
    std::fs::write(&p, serde_json::to_string(&v).unwrap()).unwrap();
}

fn load_err(dir: &Path) -> Error {
    Vlm::load(dir, None, DType::F32, &Device::Cpu).expect_err("must fail")
}

fn config_err_naming(dir: &Path, field: &str) {
    match load_err(dir) {
        Error::Config { msg, .. } => assert!(msg.contains(field), "message {msg:?} names {field}"),
        e => panic!("expected a config error naming {field}, got {e:?}"),
    }
}

#[test]
fn unsupported_or_inconsistent_config_values_are_typed_errors() {
    let cases: Vec<(&str, serde_json::Value)> = vec![
        ("mm_vision_token_compression_type", serde_json::json!("local-conv-self-attn-deep")),
        ("mm_hidden_size", serde_json::json!(33)),
        ("mm_vision_output_text_embedding_size", serde_json::json!(4096)),
        ("mm_vision_output_token_count", serde_json::json!(16)),
        ("mm_vision_token_compression_kernel_size", serde_json::json!(9)),
        ("mm_projector_type", serde_json::json!("qformer")),
        ("mm_vision_multi_select_layers", serde_json::json!([2, 3, 9])),
        ("mm_vision_multi_select_layers", serde_json::json!("all")),
        ("mm_vision_select_feature", serde_json::json!("cls_patch")),
    ];
    for (field, value) in cases {
        let tmp = copy_fixture("quecc_qwen2");
        edit_config(tmp.path(), |c| {
            c.insert(field.to_string(), value.clone());
        });
        let e = load_err(tmp.path());
        let msg = e.to_string();
        assert!(matches!(e, Error::Config { .. }), "{field} = {value}: {e:?}");
        let named = msg.contains(field) || (field == "mm_vision_multi_select_layers" && msg.contains("multi-level"));
        assert!(named, "{field} = {value}: message {msg:?} must name the field");
    }
    // An embedded tower whose config is unknown.
    let tmp = copy_fixture("quecc_qwen2");
    edit_config(tmp.path(), |c| {
        c.remove("vision_config");
    });
    config_err_naming(tmp.path(), "vision");
}

#[test]
fn missing_files_are_typed_errors() {
    let tmp = copy_fixture("quecc_qwen2");
    std::fs::remove_file(tmp.path().join("tokenizer.json")).unwrap();
    assert!(matches!(load_err(tmp.path()), Error::Checkpoint { path, .. } if path.ends_with("tokenizer.json")));

    let tmp = copy_fixture("quecc_qwen2");
    std::fs::remove_file(tmp.path().join("model.safetensors")).unwrap();
    assert!(matches!(load_err(tmp.path()), Error::Checkpoint { .. }));

    // The plain checkpoint's local CLIP directory is missing (not copied).
    let tmp = copy_fixture("llava15_llama");
    config_err_naming(tmp.path(), "mm_vision_tower");

    let e = Vlm::load(Path::new("/nonexistent/vlm"), None, DType::F32, &Device::Cpu).unwrap_err();
    assert!(matches!(e, Error::Checkpoint { .. }), "{e:?}");

    // A truncated weight file.
    let tmp = copy_fixture("quecc_qwen2");
    let w = tmp.path().join("model.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(load_err(tmp.path()), Error::Checkpoint { .. }));
}

#[test]
fn missing_compressor_tensor_is_an_error_naming_it() {
    let tmp = copy_fixture("quecc_qwen2");
    let w = tmp.path().join("model.safetensors");
    let mut ts = candle_core::safetensors::load(&w, &Device::Cpu).unwrap();
    ts.remove("model.mm_projector.0.q_downsample.weight").unwrap();
    candle_core::safetensors::save(&ts, &w).unwrap();
    let e = load_err(tmp.path());
    assert!(e.to_string().contains("q_downsample"), "{e}");
}

#[test]
fn tokenizer_without_template_tokens_is_a_typed_error() {
    // A Qwen2 (ChatML) checkpoint with the Llama tokenizer, which lacks <|im_start|>.
    let tmp = copy_fixture("quecc_qwen2");
    std::fs::copy(fixture("llava15_llama").join("tokenizer.json"), tmp.path().join("tokenizer.json")).unwrap();
    match load_err(tmp.path()) {
        Error::Tokenizer { msg, .. } => assert!(msg.contains("<|im_start|>"), "{msg}"),
        e => panic!("expected a tokenizer error, got {e:?}"),
    }
}

#[test]
fn bad_inputs_are_typed_errors() {
    let mut vlm = load("quecc_qwen2", None);
    let opts = AnswerOptions { max_new_tokens: 4, ..Default::default() };
    // Over-long prompt: 256 positions in the tiny Qwen2.
    let long = "How many objects are there? ".repeat(60);
    let e = vlm.answer(&image(), &long, &opts, |_| Ok(())).unwrap_err();
    assert!(matches!(e, Error::ContextWindow { max: 256, .. }), "{e:?}");
    // Empty question.
    assert!(matches!(vlm.answer(&image(), "  ", &opts, |_| Ok(())).unwrap_err(), Error::Invalid(_)));
    // Not an image / missing image.
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    assert!(matches!(vlm.answer(&readme, QUESTION, &opts, |_| Ok(())).unwrap_err(), Error::Image { .. }));
    let missing = Path::new("/nonexistent.png");
    assert!(matches!(vlm.answer(missing, QUESTION, &opts, |_| Ok(())).unwrap_err(), Error::Io { .. }));
    // Bad sampling options.
    let bad = AnswerOptions { top_p: 0.0, temperature: 0.7, ..opts.clone() };
    assert!(matches!(vlm.answer(&image(), QUESTION, &bad, |_| Ok(())).unwrap_err(), Error::Invalid(_)));
    // Seeded sampling is reproducible.
    let s = AnswerOptions { temperature: 0.8, top_p: 0.9, seed: 7, max_new_tokens: 6, ..Default::default() };
    let a = vlm.answer(&image(), QUESTION, &s, |_| Ok(())).unwrap();
    let b = vlm.answer(&image(), QUESTION, &s, |_| Ok(())).unwrap();
    assert_eq!(a.tokens, b.tokens);
}

#[test]
fn bf16_llm_stays_close_to_the_f32_reference() {
    // The LLM in bf16 (vision tower, compressor and projector stay f32): prefill logits within bf16
    // rounding of the PyTorch f32 reference (8 mantissa bits over 2 layers → loose bound).
    let vlm = Vlm::load(&fixture("quecc_qwen2"), None, DType::BF16, &Device::Cpu).unwrap();
    assert_eq!(vlm.decoder().dtype(), DType::BF16);
    let exp = expected("quecc_qwen2");
    let q = vlm.query_embedding(QUESTION).unwrap();
    assert_eq!(q.dtype(), DType::F32);
    let visual = vlm.visual_embeddings(&exp["pixels"], QUESTION).unwrap();
    let e = rel_err(&visual, &exp["visual"]);
    assert!(e < 5e-2, "visual tokens with a bf16 query embedding: {e}");
    let embeds = vlm.input_embeddings(QUESTION, &exp["visual"]).unwrap();
    let logits = vlm.decoder().lm_head(&vlm.decoder().forward_hidden(&embeds).unwrap()).unwrap();
    let e = rel_err(&logits.to_dtype(DType::F32).unwrap(), &exp["prefill_logits"]);
    println!("bf16 prefill logits: max relative error {e:.3e}");
    assert!(e < 5e-2, "bf16 prefill logits: {e}");
}

//! `vlmscale generate` and `vlmscale inspect` through the binary, on the tiny LLaVA-layout fixture
//! checkpoints of the engine crate (crates/engine/tests/fixtures/vlm, made by make_vlm_fixtures.py). The
//! expected answers are HF `generate`'s greedy ids decoded by the Python `tokenizers` package
//! (expected.json); the expected N and V come from the checkpoint shapes written by that script.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn vlmscale(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vlmscale")).args(args).output().expect("binary runs")
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/fixtures")
}

fn model(name: &str) -> String {
    fixtures().join("vlm").join(name).display().to_string()
}

fn image() -> String {
    fixtures().join("images/chelsea.png").display().to_string()
}

fn expected(name: &str) -> serde_json::Value {
    let p = fixtures().join("vlm").join(name).join("expected.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// Splits stdout into (answer, timing line).
fn answer_and_timings(out: &Output) -> (String, String) {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let s = String::from_utf8(out.stdout.clone()).expect("UTF-8 stdout");
    let s = s.strip_suffix('\n').expect("ends with a newline");
    let (answer, timing) = s.rsplit_once('\n').expect("answer line(s) then a timing line");
    (answer.to_string(), timing.to_string())
}

fn greedy_matches_hf(name: &str, v: usize) {
    let exp = expected(name);
    let q = exp["question"].as_str().unwrap();
    let n = exp["max_new_tokens"].as_u64().unwrap().to_string();
    let out =
        vlmscale(&["generate", "--model", &model(name), "--image", &image(), "--prompt", q, "--max-new-tokens", &n]);
    let (answer, timing) = answer_and_timings(&out);
    assert_eq!(answer, exp["answer"].as_str().unwrap(), "{name}: greedy answer");
    for needle in ["vision", "compressor", "query-embedding", "prefill", "TTFT", "tokens/s", "Q + V"] {
        assert!(timing.contains(needle), "timing line lacks {needle}: {timing}");
    }
    assert!(timing.contains(&format!(" + {v} = ")), "{name}: V = {v} in {timing}");
}

#[test]
fn generate_quecc_qwen2_greedy_matches_hf() {
    greedy_matches_hf("quecc_qwen2", 4);
}

#[test]
fn generate_plain_llava15_greedy_matches_hf() {
    greedy_matches_hf("llava15_llama", 64);
}

#[test]
fn generate_with_sampling_is_reproducible_and_vision_tower_override_works() {
    let clip = fixtures().join("vlm/llava15_llama/clip").display().to_string();
    let args = [
        "generate",
        "--model",
        &model("llava15_llama"),
        "--image",
        &image(),
        "--prompt",
        "Describe the picture.",
        "--vision-tower",
        &clip,
        "--max-new-tokens",
        "6",
        "--temperature",
        "0.8",
        "--top-p",
        "0.9",
        "--seed",
        "5",
    ];
    let a = answer_and_timings(&vlmscale(&args)).0;
    let b = answer_and_timings(&vlmscale(&args)).0;
    assert_eq!(a, b);
}

#[test]
fn inspect_reports_architecture_n_v_and_flops() {
    let out = vlmscale(&["inspect", "--model", &model("quecc_qwen2"), "--json"]);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["architecture"], "qwen2");
    assert_eq!(v["visual_tokens"], 4);
    // N of the script's Qwen2 (vocab 416, H 64, 2 layers, 4 heads / 2 KV heads of 16, d_ff 128, tied):
    // 416·64 + 2·(64·64 + 64 + 2·(64·32 + 32) + 64·64 + 3·64·128 + 2·64) + 64.
    let per_layer = 64 * 64 + 64 + 2 * (64 * 32 + 32) + 64 * 64 + 3 * 64 * 128 + 2 * 64;
    assert_eq!(v["llm_params"], 416 * 64 + 2 * per_layer + 64);
    assert!(v["compressor"].as_str().unwrap().starts_with("quecc"));
    assert_eq!(v["projector"], "mlp2x_gelu");
    let total = v["flops"]["total"].as_f64().unwrap();
    assert!(total > v["flops"]["paper"].as_f64().unwrap(), "vision tower + query pass add to 2·N·(Q+V)");
    let out = vlmscale(&["inspect", "--model", &model("llava15_llama")]);
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    for needle in ["llama", "vicuna_v1", "none", "64 visual tokens", "FLOPs", "mlp2x_gelu"] {
        assert!(s.contains(needle), "missing {needle} in\n{s}");
    }
}

fn fails_with(args: &[&str], code: i32, needle: &str) {
    let out = vlmscale(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {err}");
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_input_is_a_clear_error_with_exit_code_2() {
    let m = model("quecc_qwen2");
    let img = image();
    fails_with(
        &["generate", "--model", "/nonexistent/ckpt", "--image", &img, "--prompt", "hi"],
        2,
        "/nonexistent/ckpt",
    );
    fails_with(&["inspect", "--model", "/nonexistent/ckpt"], 2, "/nonexistent/ckpt");
    fails_with(&["generate", "--model", &m, "--image", "/nonexistent.png", "--prompt", "hi"], 2, "nonexistent.png");
    let not_image = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml").display().to_string();
    fails_with(&["generate", "--model", &m, "--image", &not_image, "--prompt", "hi"], 2, "Cargo.toml");
    let long = "How many objects are there? ".repeat(60);
    fails_with(&["generate", "--model", &m, "--image", &img, "--prompt", &long], 2, "context window");
    fails_with(
        &["generate", "--model", &m, "--image", &img, "--prompt", "hi", "--top-p", "0", "--temperature", "1"],
        2,
        "top_p",
    );
    fails_with(&["generate", "--model", &m, "--image", &img, "--prompt", "hi", "--dtype", "f64"], 2, "--dtype");
    // Meaningless weight combinations, refused before anything is loaded.
    let q4_f16 = ["generate", "--model", "/nonexistent/ckpt", "--image", &img, "--prompt", "hi", "--weights", "q4_0"];
    fails_with(&[&q4_f16[..], &["--dtype", "f16"]].concat(), 2, "--weights q4_0 needs --dtype f32");
    fails_with(&[&q4_f16[..], &["--quant-parts", "vision,decoder"]].concat(), 2, "unknown part `decoder`");
    let bf16_parts =
        ["generate", "--model", &m, "--image", &img, "--prompt", "hi", "--weights", "bf16", "--quant-parts", "llm"];
    fails_with(&bf16_parts, 2, "--quant-parts applies to --weights q8_0 or q4_0");
    // A width that is not a multiple of 32 (the Llama fixture: H = 48) names the tensor.
    let llama = model("llava15_llama");
    fails_with(
        &["generate", "--model", &llama, "--image", &img, "--prompt", "hi", "--weights", "q8_0"],
        2,
        "model.embed_tokens.weight",
    );
    // An unsupported compressor in config.json.
    let tmp = tempfile::tempdir().unwrap();
    for e in std::fs::read_dir(fixtures().join("vlm/quecc_qwen2")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, tmp.path().join(p.file_name().unwrap())).unwrap();
    }
    let cfg = tmp.path().join("config.json");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("\"quecc\"", "\"token-merging\"");
    std::fs::write(&cfg, text).unwrap();
    let d = tmp.path().display().to_string();
    fails_with(&["inspect", "--model", &d], 2, "mm_vision_token_compression_type");
    fails_with(&["generate", "--model", &d, "--image", &img, "--prompt", "hi"], 2, "mm_vision_token_compression_type");
}

#[test]
fn bench_infer_rejects_bad_arguments_before_building_anything() {
    fails_with(&["bench", "infer", "--visual-tokens", "1,5", "--no-peer"], 2, "V = 5");
    fails_with(&["bench", "infer", "--size", "7b", "--no-peer"], 2, "7b");
    fails_with(&["bench", "infer", "--visual-tokens", "x"], 2, "--visual-tokens");
    fails_with(&["bench", "infer", "--weights", "bf16,f32", "--no-peer"], 2, "f32 must come first");
    fails_with(&["bench", "infer", "--weights", "bf16", "--quant-parts", "llm", "--no-peer"], 2, "--quant-parts");
    // A list of methods is timed on one set of weights; `trained` is the ordinary bench and cannot
    // join it, and every method's request is checked before any weight is made.
    fails_with(&["bench", "infer", "--token-reduction", "trained,visionzip", "--no-peer"], 2, "trained");
    fails_with(
        &["bench", "infer", "--token-reduction", "cls-topk,fastv", "--fastv-layer", "99", "--visual-tokens", "64"],
        2,
        "99",
    );
    fails_with(&["bench", "infer", "--token-reduction", "visionzip,tome", "--visual-tokens", "64"], 2, "tome");
}

//! `vlmscale generate --token-reduction METHOD --visual-tokens V` through the binary on the tiny plain
//! LLaVA-1.5 fixture (crates/engine/tests/fixtures/vlm/llava15_llama, 8×8 grid, 2-layer Llama): the
//! timing line reports the V asked for, and bad requests exit with code 2 and a message, never a panic.
//! (Parity of each method with its reference is in crates/engine/tests/reduction_parity.rs.)
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/fixtures")
}

fn generate(extra: &[&str]) -> Output {
    let model = fixtures().join("vlm/llava15_llama").display().to_string();
    let image = fixtures().join("images/chelsea.png").display().to_string();
    let mut args = vec!["generate", "--model", &model, "--image", &image, "--prompt", "What is shown?"];
    args.extend_from_slice(&["--max-new-tokens", "3"]);
    args.extend_from_slice(extra);
    Command::new(env!("CARGO_BIN_EXE_vlmscale")).args(&args).output().expect("binary runs")
}

#[test]
fn generate_reports_the_requested_v_for_every_method() {
    for (method, v) in [("visionzip", 16), ("cls-topk", 4), ("prumerge-plus-fixed", 16), ("avgpool", 4), ("fastv", 16)]
    {
        let out = generate(&["--token-reduction", method, "--visual-tokens", &v.to_string(), "--fastv-layer", "1"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{method}: {stderr}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let timing = stdout.trim_end().lines().last().unwrap();
        assert!(timing.contains(&format!(" + {v} = ")), "{method}: V = {v} in {timing}");
    }
    let out = generate(&["--token-reduction", "prumerge-plus"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn bad_token_reduction_requests_exit_2() {
    let cases: [&[&str]; 7] = [
        &["--token-reduction", "cls-topk", "--visual-tokens", "0"],
        &["--token-reduction", "visionzip", "--visual-tokens", "65"],
        &["--token-reduction", "avgpool", "--visual-tokens", "9"],
        &["--token-reduction", "fastv", "--visual-tokens", "16", "--fastv-layer", "2"],
        &["--token-reduction", "cls-topk"],
        &["--visual-tokens", "16"],
        &["--token-reduction", "tome", "--visual-tokens", "16"],
    ];
    for args in cases {
        let out = generate(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.trim().is_empty(), "{args:?}: a message");
    }
}

/// `flops --exact` and `inspect` count a token reduction; requests the engine would refuse are
/// refused the same way (exit 2, a message).
#[test]
fn flops_and_inspect_count_token_reductions() {
    let run = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_vlmscale")).args(args).output().expect("binary runs");
    let flops = ["flops", "--exact", "--preset", "qwen1.5-0.5b", "--text-tokens", "50", "--json"];
    let total = |extra: &[&str]| -> f64 {
        let out = run(&[&flops[..], extra].concat());
        assert!(out.status.success(), "{extra:?}: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["total"].as_f64().unwrap()
    };
    let all = total(&["--visual-tokens", "576", "--compressor", "none"]);
    let fastv = total(&["--visual-tokens", "64", "--token-reduction", "fastv"]);
    let zip = total(&["--visual-tokens", "64", "--token-reduction", "visionzip"]);
    // Pruning after layer 2 of 24 saves most of the LLM; VisionZip prunes before it and saves more.
    assert!(zip < fastv && fastv < all, "{zip:e} {fastv:e} {all:e}");
    let model = fixtures().join("vlm/llava15_llama").display().to_string();
    let out = run(&["inspect", "--model", &model, "--token-reduction", "cls-topk", "--visual-tokens", "16", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let terms = v["flops"]["breakdown"]["terms"].as_array().unwrap();
    assert!(terms.iter().any(|t| t["name"] == "reduction.cls-topk"), "{v}");
    assert_eq!(v["visual_tokens"], 16);

    let quecc = fixtures().join("vlm/quecc_qwen2").display().to_string();
    let bad: [&[&str]; 5] = [
        &["--visual-tokens", "64", "--token-reduction", "fastv", "--fastv-layer", "24"],
        &["--visual-tokens", "0", "--token-reduction", "cls-topk"],
        &["--visual-tokens", "600", "--token-reduction", "visionzip"],
        &["--visual-tokens", "10", "--token-reduction", "avgpool"],
        &["--visual-tokens", "64", "--token-reduction", "cls-topk", "--compressor", "quecc"],
    ];
    for extra in bad {
        let out = run(&[&flops[..], extra].concat());
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let out = run(&["inspect", "--model", &quecc, "--token-reduction", "visionzip", "--visual-tokens", "4"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("trained compressor"));
}

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

//! `vlmscale bench train` through the binary: a tiny run prints one row per size and writes the JSON it
//! promises; bad settings are clear errors with exit code 2, before any model is built. (Throughput
//! itself is not tested: timings are not test material. That the PyTorch peer trains the identical
//! model is tested in the bench crate, `tests/torch_peer.rs`.)
use std::process::{Command, Output};

fn vlmscale(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vlmscale")).args(args).output().expect("binary runs")
}

#[test]
fn tiny_bench_prints_a_row_per_size_and_writes_json() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let out = vlmscale(&[
        "bench",
        "train",
        "--llm",
        "xs",
        "--compressor",
        "avgpool",
        "--visual-tokens",
        "4",
        "--batch",
        "2",
        "--steps",
        "1",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.lines().any(|l| l.starts_with("xs ")), "{stdout}");
    assert!(stdout.contains("PyTorch peer not run"), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let rows = v["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["llm"], "xs");
    assert_eq!(rows[0]["batch_size"], 2);
    assert!(rows[0]["step_s"].as_f64().unwrap() > 0.0);
    // avgpool has no matrix products of its own: the FLOPs are the projector's and the LLM's, > 0.
    assert!(rows[0]["flops_per_step"].as_f64().unwrap() > 0.0);
}

fn fails_with(args: &[&str], needle: &str) {
    let out = vlmscale(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_settings_exit_2() {
    fails_with(&["bench", "train", "--llm", "huge"], "huge");
    fails_with(&["bench", "train", "--compressor", "nope"], "nope");
    fails_with(&["bench", "train", "--visual-tokens", "5"], "V = 5");
    fails_with(&["bench", "train", "--steps", "0"], "--steps");
    fails_with(&["bench", "train", "--threads", "0"], "--threads");
}

//! `vlmscale bench serve` through the binary at tiny sizes (the `tiny` LLM and tower, 56-pixel
//! images, a few tokens and requests; llama-server skipped): the random checkpoint is written and
//! served, every load runs over HTTP, the table and the JSON come out, and no request of the mixed
//! load fails. Nothing is asserted on speed. Bad flags are exit code 2.
use std::process::Command;

#[test]
fn bench_serve_runs_every_load_at_tiny_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("serve.json");
    let out = Command::new(env!("CARGO_BIN_EXE_vlmscale"))
        .args(["bench", "serve", "--size", "tiny", "--image-size", "56", "--max-tokens", "6", "--streams", "2"])
        .args(["--clients", "3", "--requests", "4", "--load-max-tokens", "3", "--threads", "1"])
        .args(["--llama-server", "none", "--json"])
        .arg(&json)
        .arg("--workdir")
        .arg(dir.path().join("work"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    for needle in [
        "(a) decode tokens/s",
        "(b) ratio to (a)",
        "(c) 3 clients × 4 requests",
        "llama-server: NOT run: --llama-server none",
    ] {
        assert!(stdout.contains(needle), "no `{needle}` in:\n{stdout}");
    }
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["single"]["tokens"], 6, "greedy answers run to max_tokens: {v}");
    assert_eq!(v["concurrent"]["tokens"], 12);
    assert_eq!(v["image_visual_tokens"], 16, "56 px / 14 = a 4 × 4 grid");
    let load = &v["mixed_load"];
    assert_eq!(load["failed"], 0, "{load}");
    let mix: u64 = load["mix"].as_array().unwrap().iter().map(|m| m[1].as_u64().unwrap()).sum();
    assert_eq!(mix, 12);
    assert!(load["tokens"].as_u64().unwrap() > 0);
    assert!(v["llama_server"]["single"].is_null());
}

#[test]
fn bench_serve_refuses_bad_flags() {
    for args in [["--image-size", "50"], ["--max-tokens", "1"], ["--size", "7b"]] {
        let out = Command::new(env!("CARGO_BIN_EXE_vlmscale")).args(["bench", "serve"]).args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

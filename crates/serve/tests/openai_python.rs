//! The official `openai` Python client (`tests/openai_client.py`) against the server: a plain, a
//! streamed and a budget completion. Skips (passing, with a message) when `python3` or its `openai`
//! package is missing; CI installs it with `pip install openai`.
mod common;

use std::process::Command;

use common::*;
use scaling::law::{Law, TokenAxis};
use serve::{Planner, ServeConfig};

#[test]
fn openai_python_client() {
    let has_openai = Command::new("python3").args(["-c", "import openai"]).output().map(|o| o.status.success());
    if !has_openai.unwrap_or(false) {
        println!("skipped: python3 with the `openai` package is not available (pip install openai)");
        return;
    }
    let mut cfg = ServeConfig::new(vec![fixture("quecc_qwen2"), fixture("llava15_llama")]);
    cfg.planner = Some(Planner {
        law: Law::Multiplicative { a: 0.3, alpha: 0.08, beta: 0.01, d: 0.2 },
        axis: TokenAxis::Visual,
        origin: "test".into(),
        latency: None,
    });
    let s = TestServer::start(cfg);
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openai_client.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--base-url", &format!("http://{}/v1", s.addr), "--model", "quecc_qwen2", "--image"])
        .arg(image_path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the openai client script failed");
    assert!(stdout.contains("openai client: 3 passed, 0 failed"), "{stdout}");
}

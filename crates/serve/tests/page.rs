//! The page at `GET /` in headless Chromium (`tests/page_chromium.py`, DevTools protocol over a
//! pipe): uploads the test photograph, asks, and checks that the streamed answer and the
//! `V = … | TTFT …` line appear. Skips (passing, with a message) without python3 or Chromium.
mod common;

use std::process::Command;

use common::*;
use serve::ServeConfig;

#[test]
fn page_answers_an_uploaded_image_in_chromium() {
    let has_python = Command::new("python3").arg("--version").output().is_ok_and(|o| o.status.success());
    let has_chromium = ["chromium", "chromium-browser"].iter().any(|b| {
        Command::new("sh").args(["-c", &format!("command -v {b}")]).output().is_ok_and(|o| o.status.success())
    });
    if !(has_python && has_chromium) {
        println!("skipped: needs python3 and Chromium (apt-get install chromium)");
        return;
    }
    let s = TestServer::start(ServeConfig::new(vec![fixture("quecc_qwen2"), fixture("llava15_llama")]));
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/page_chromium.py");
    let out = Command::new("python3")
        .arg(&script)
        .args(["--url", &format!("http://{}/", s.addr), "--image"])
        .arg(image_path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the page script failed");
    assert!(stdout.contains("page: 1 passed, 0 failed"), "{stdout}");
    assert!(stdout.contains("V = 4 (trained:quecc)"), "the first model, its trained V: {stdout}");
}

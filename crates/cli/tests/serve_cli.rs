//! `vlmscale serve` through the binary: it binds an ephemeral loopback port and prints it, answers a
//! streamed request about the test photograph (a `file://` URL under --allowed-local-media-path), and
//! on SIGTERM lets that request finish, then exits 0. Bad flags are exit code 2. (The server's
//! behaviour in detail is tested in the serve crate.)
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/fixtures").join(p)
}

#[test]
fn serves_a_streamed_request_and_stops_gracefully_on_sigterm() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vlmscale"))
        .args(["serve", "--port", "0", "--A", "0.3", "--alpha", "0.08", "--beta", "0.01", "--D", "0.2", "--model"])
        .arg(fixture("vlm/quecc_qwen2"))
        .arg("--allowed-local-media-path")
        .arg(fixture("images"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();

    let image = fixture("images/chelsea.png").canonicalize().unwrap();
    let body = serde_json::json!({
        "model": "quecc_qwen2", "stream": true, "max_tokens": 8, "temperature": 0,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is shown in the image?"},
            {"type": "image_url", "image_url": {"url": format!("file://{}", image.display())}},
        ]}],
    })
    .to_string();
    let mut c = TcpStream::connect(&addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    write!(
        c,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // The response has started (head and first event) when SIGTERM is sent.
    let mut head = vec![];
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.read(&mut buf).unwrap();
        assert!(n > 0, "closed before the response head");
        head.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 200"));
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let _ = c.read_to_end(&mut head);
    let all = String::from_utf8_lossy(&head);
    assert!(all.contains("data: [DONE]"), "the in-flight stream finishes: {all}");
    let exit = child.wait().unwrap();
    assert!(exit.success(), "exit status {exit:?}");
    let mut out = String::new();
    stdout.read_to_string(&mut out).unwrap();
    assert!(out.contains("vlmscale serve: stopped"), "{out}");
}

#[test]
fn bad_flags_are_usage_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_vlmscale"))
        .args(["serve", "--port", "0", "--A", "0.3", "--alpha", "0.08", "--beta", "0.01", "--D", "0.2", "--model"])
        .arg(fixture("vlm/quecc_qwen2"))
        .args(["--allowed-local-media-path", "/nonexistent/media/dir"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allowed-local-media-path"));
    let out = Command::new(env!("CARGO_BIN_EXE_vlmscale"))
        .args(["serve", "--port", "0", "--A", "0.3", "--alpha", "0.08", "--beta", "0.01", "--D", "0.2", "--model"])
        .arg(fixture("vlm/does_not_exist"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

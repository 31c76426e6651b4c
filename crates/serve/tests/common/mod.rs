//! Test harness: a server on an ephemeral loopback port (its own thread and tokio runtime) over the
//! engine's tiny committed checkpoints, and a minimal blocking HTTP/1.1 client over `TcpStream`
//! (exact control over bodies, headers and disconnects).
#![allow(dead_code)]
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{json, Value};
use serve::{ServeConfig, Server};

/// One of the engine's tiny LLaVA-layout checkpoints: `quecc_qwen2` (QueCC, V = 4) or
/// `llava15_llama` (plain LLaVA-1.5, 8 × 8 grid, V = 64).
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/fixtures/vlm").join(name)
}

/// The committed test photograph.
pub fn image_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/fixtures/images/chelsea.png")
}

/// `data:image/png;base64,…` of `bytes`.
pub fn data_url(bytes: &[u8]) -> String {
    format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// The test photograph as a data URL.
pub fn image_url() -> String {
    data_url(&std::fs::read(image_path()).unwrap())
}

/// The question of the engine's parity fixtures.
pub const QUESTION: &str = "What is shown in the image?";

/// A running server.
pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    release: Box<dyn Fn() + Send + Sync>,
}

impl TestServer {
    /// Starts `config` on 127.0.0.1 with an ephemeral port.
    pub fn start(config: ServeConfig) -> Self {
        let server = Server::new(config).expect("server loads");
        let release = Box::new(server.worker_release_handle());
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                server
                    .serve(listener, async move {
                        let _ = stop_rx.await;
                    })
                    .await
                    .unwrap();
            });
        });
        let addr = addr_rx.recv().unwrap();
        Self { addr, stop: Some(stop_tx), thread: Some(thread), release }
    }

    /// Sends the shutdown signal (as SIGTERM would).
    pub fn signal_shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }

    /// Lets a held worker run.
    pub fn release_worker(&self) {
        (self.release)();
    }

    /// Waits for the server thread to end (after [`Self::signal_shutdown`]).
    pub fn join(&mut self) {
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }

    pub fn get(&self, path: &str) -> Resp {
        request(self.addr, "GET", path, &[], b"")
    }

    pub fn post_json(&self, path: &str, body: &Value) -> Resp {
        request(self.addr, "POST", path, &[("Content-Type", "application/json")], body.to_string().as_bytes())
    }

    pub fn chat(&self, body: &Value) -> Resp {
        self.post_json("/v1/chat/completions", body)
    }

    pub fn chat_raw(&self, body: &[u8]) -> Resp {
        request(self.addr, "POST", "/v1/chat/completions", &[("Content-Type", "application/json")], body)
    }

    /// The value of a metric line `name` (exact series text), if present.
    pub fn metric(&self, series: &str) -> Option<f64> {
        let text = String::from_utf8(self.get("/metrics").body).unwrap();
        text.lines().find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')).map(|v| v.parse().unwrap()))
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.release_worker();
        self.signal_shutdown();
        // Do not join here: a failed test must not hang on a server waiting for a stuck client.
    }
}

/// An HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `data:` payloads of an SSE body.
    pub fn sse_data(&self) -> Vec<String> {
        self.text().split("\n\n").filter_map(|e| e.strip_prefix("data: ")).map(str::to_string).collect()
    }
}

/// One request on a fresh connection (`Connection: close`), read to the end.
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Resp {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(head.as_bytes()).unwrap();
    // The server may answer (413) and close before reading all of a large body.
    let _ = s.write_all(body);
    read_response(&mut s)
}

/// Reads until the end of the response head; returns what was read.
pub fn read_head(s: &mut TcpStream) -> String {
    let mut got = vec![];
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "connection closed before the response head: {:?}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Reads a whole response (Content-Length, chunked, or to EOF).
pub fn read_response(s: &mut TcpStream) -> Resp {
    let mut raw = vec![];
    let _ = s.read_to_end(&mut raw);
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> Resp {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| {
        panic!("no complete response head in {} bytes: {:?}", raw.len(), String::from_utf8_lossy(raw))
    });
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> =
        lines.filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))).collect();
    let rest = &raw[end + 4..];
    let chunked =
        headers.iter().any(|(k, v)| k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_vec() };
    Resp { status, headers, body }
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = vec![];
    while let Some(nl) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).split(';').next().unwrap().trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        let start = nl + 2;
        let stop = (start + size).min(b.len());
        out.extend_from_slice(&b[start..stop]);
        b = &b[(stop + 2).min(b.len())..];
    }
    out
}

/// A chat request about the test image.
pub fn image_request(model: &str, max_tokens: usize) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": QUESTION},
            {"type": "image_url", "image_url": {"url": image_url()}},
        ]}],
        "max_tokens": max_tokens,
        "temperature": 0,
    })
}

/// Asserts an OpenAI-style error with `status` and `code`.
#[track_caller]
pub fn assert_error(resp: &Resp, status: u16, code: &str) {
    assert_eq!(resp.status, status, "status; body {}", resp.text());
    let j = resp.json();
    let e = &j["error"];
    assert_eq!(e["code"], code, "code; body {j}");
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "message: {j}");
    assert!(e["type"].as_str().is_some(), "type: {j}");
    assert!(e.get("param").is_some(), "param present (may be null): {j}");
}

//! Faults: every bad request gets the right status and an OpenAI-style JSON error, and a normal
//! request right after it succeeds (the server keeps serving). Also the queue limit (429 with
//! Retry-After), the per-request timeout (504), a client that disconnects mid-stream, and graceful
//! shutdown (in-flight requests finish, new ones get 503).
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use scaling::law::{Law, TokenAxis};
use serde_json::{json, Value};
use serve::{Planner, ServeConfig};

fn config() -> ServeConfig {
    let mut c = ServeConfig::new(vec![fixture("quecc_qwen2"), fixture("llava15_llama")]);
    c.planner = Some(Planner {
        law: Law::Multiplicative { a: 0.3, alpha: 0.08, beta: 0.01, d: 0.2 },
        axis: TokenAxis::Visual,
        origin: "test".into(),
        latency: None,
    });
    c.max_body_bytes = 4 << 20;
    c.media.max_image_bytes = 1 << 20;
    c
}

/// A normal request must succeed after each fault.
#[track_caller]
fn still_serving(s: &TestServer) {
    let r = s.chat(&image_request("quecc_qwen2", 2));
    assert_eq!(r.status, 200, "normal request after a fault: {}", r.text());
    assert_eq!(r.json()["usage"]["completion_tokens"], 2);
}

/// The request with one field replaced (a JSON pointer) or removed (`Value::Null` for `remove`).
fn with(pointer: &str, value: Value) -> Value {
    let mut r = image_request("llava15_llama", 2);
    *r.pointer_mut(pointer).unwrap_or_else(|| panic!("{pointer}")) = value;
    r
}

fn with_field(key: &str, value: Value) -> Value {
    let mut r = image_request("llava15_llama", 2);
    r[key] = value;
    r
}

fn image_part(url: &str) -> Value {
    json!({"type": "image_url", "image_url": {"url": url}})
}

/// A PNG whose header declares `w`×`h` pixels, with a tiny (invalid) data stream: a decompression
/// bomb as far as the header goes.
fn png_header(w: u32, h: u32) -> Vec<u8> {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc_in = kind.to_vec();
        crc_in.extend_from_slice(data);
        out.extend_from_slice(&crc_in);
        out.extend_from_slice(&crc32(&crc_in).to_be_bytes());
    }
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = vec![];
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(&mut out, b"IEND", &[]);
    out
}

/// CRC-32 (ISO-HDLC), as PNG chunks use.
fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xFFFF_FFFFu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
        }
    }
    !c
}

#[test]
fn crc32_matches_the_standard_check_value() {
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
}

#[test]
fn bad_requests_get_json_errors_and_the_server_keeps_serving() {
    let media = tempfile::tempdir().unwrap();
    let inside = media.path().join("inside");
    std::fs::create_dir(&inside).unwrap();
    std::fs::copy(image_path(), inside.join("ok.png")).unwrap();
    std::fs::copy(image_path(), media.path().join("outside.png")).unwrap();
    std::os::unix::fs::symlink(media.path().join("outside.png"), inside.join("link.png")).unwrap();
    let mut cfg = config();
    cfg.media.allowed_local_dir = Some(inside.clone());
    let s = TestServer::start(cfg);
    let inside_c = inside.canonicalize().unwrap();

    let text_with_image =
        |text: &str, url: &str| with("/messages/0/content", json!([{"type": "text", "text": text}, image_part(url)]));
    let url_case = |url: &str| text_with_image(QUESTION, url);
    let long_text = "describe ".repeat(400);

    // (label, body, status, code)
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("malformed JSON", b"{\"model\": ".to_vec(), 400, "invalid_json"),
        ("empty body", b"".to_vec(), 400, "invalid_json"),
        ("not JSON at all", b"hello".to_vec(), 400, "invalid_json"),
        ("JSON array", b"[]".to_vec(), 400, "invalid_value"),
        ("JSON null", b"null".to_vec(), 400, "invalid_value"),
        ("trailing garbage", b"{\"messages\": []} x".to_vec(), 400, "invalid_json"),
        ("no messages", json!({"model": "quecc_qwen2"}).to_string().into_bytes(), 400, "invalid_value"),
        ("messages is a string", with("/messages", json!("hi")).to_string().into_bytes(), 400, "invalid_value"),
        ("messages empty", with("/messages", json!([])).to_string().into_bytes(), 400, "invalid_value"),
        ("message without role", with("/messages/0", json!({"content": "hi"})).to_string().into_bytes(), 400, "invalid_value"),
        ("unknown role", with("/messages/0/role", json!("robot")).to_string().into_bytes(), 400, "invalid_value"),
        ("content is a number", with("/messages/0/content", json!(5)).to_string().into_bytes(), 400, "invalid_value"),
        ("content null", with("/messages/0/content", Value::Null).to_string().into_bytes(), 400, "invalid_value"),
        ("unknown part type", with("/messages/0/content/1", json!({"type": "input_audio", "input_audio": {}})).to_string().into_bytes(), 400, "invalid_value"),
        ("image part without image_url", with("/messages/0/content/1", json!({"type": "image_url"})).to_string().into_bytes(), 400, "invalid_value"),
        ("image_url without url", with("/messages/0/content/1/image_url", json!({"detail": "low"})).to_string().into_bytes(), 400, "invalid_value"),
        ("url is a number", with("/messages/0/content/1/image_url/url", json!(7)).to_string().into_bytes(), 400, "invalid_value"),
        ("two images", with("/messages/0/content", json!([{"type": "text", "text": QUESTION}, image_part(&image_url()), image_part(&image_url())])).to_string().into_bytes(), 400, "too_many_images"),
        ("<image> in the text", text_with_image("<image> what?", &image_url()).to_string().into_bytes(), 400, "invalid_value"),
        ("image without text", with("/messages/0/content", json!([image_part(&image_url())])).to_string().into_bytes(), 400, "empty_prompt"),
        ("two user messages in a row", with("/messages", json!([{"role": "user", "content": "a"}, {"role": "user", "content": "c"}])).to_string().into_bytes(), 400, "unsupported_conversation"),
        ("ends with the assistant", with("/messages", json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])).to_string().into_bytes(), 400, "unsupported_conversation"),
        ("system message only", with("/messages", json!([{"role": "system", "content": "be brief"}])).to_string().into_bytes(), 400, "unsupported_conversation"),
        ("tool message", with("/messages", json!([{"role": "user", "content": "a"}, {"role": "tool", "content": "b"}, {"role": "user", "content": "c"}])).to_string().into_bytes(), 400, "unsupported_conversation"),
        ("image in an assistant message", with("/messages", json!([{"role": "user", "content": "a"}, {"role": "assistant", "content": [image_part(&image_url())]}, {"role": "user", "content": "c"}])).to_string().into_bytes(), 400, "unsupported_conversation"),
        ("images in two turns", with("/messages", json!([{"role": "user", "content": [{"type": "text", "text": "a"}, image_part(&image_url())]}, {"role": "assistant", "content": "b"}, {"role": "user", "content": [{"type": "text", "text": "c"}, image_part(&image_url())]}])).to_string().into_bytes(), 400, "too_many_images"),
        ("assistant only", with("/messages", json!([{"role": "assistant", "content": "c"}])).to_string().into_bytes(), 400, "unsupported_conversation"),
        ("non-image base64", url_case(&data_url(b"just some text, not an image")).to_string().into_bytes(), 400, "invalid_image"),
        ("invalid base64", url_case("data:image/png;base64,@@@@not-base64@@@@").to_string().into_bytes(), 400, "invalid_image"),
        ("truncated PNG", url_case(&data_url(&std::fs::read(image_path()).unwrap()[..2000])).to_string().into_bytes(), 400, "invalid_image"),
        ("data URL not base64", url_case("data:image/png,rawbytes").to_string().into_bytes(), 400, "invalid_image_url"),
        ("data URL without comma", url_case("data:image/png;base64").to_string().into_bytes(), 400, "invalid_image_url"),
        ("30000×30000 PNG header", url_case(&data_url(&png_header(30_000, 30_000))).to_string().into_bytes(), 400, "image_dimensions_too_large"),
        ("1×100000 PNG header", url_case(&data_url(&png_header(1, 100_000))).to_string().into_bytes(), 400, "image_dimensions_too_large"),
        ("0×0 PNG header", url_case(&data_url(&png_header(0, 0))).to_string().into_bytes(), 400, "invalid_image"),
        ("image over the byte limit", url_case(&data_url(&vec![0u8; 1_200_000])).to_string().into_bytes(), 413, "image_too_large"),
        ("http URL", url_case("http://127.0.0.1:1/cat.png").to_string().into_bytes(), 400, "remote_url_not_supported"),
        ("https URL", url_case("https://example.invalid/cat.png").to_string().into_bytes(), 400, "remote_url_not_supported"),
        ("ftp URL", url_case("ftp://example.invalid/cat.png").to_string().into_bytes(), 400, "invalid_image_url"),
        ("bare path", url_case("/etc/passwd").to_string().into_bytes(), 400, "invalid_image_url"),
        ("file:// escape with ..", url_case(&format!("file://{}/../outside.png", inside_c.display())).to_string().into_bytes(), 400, "file_url_not_allowed"),
        ("file:// escape by symlink", url_case(&format!("file://{}/link.png", inside_c.display())).to_string().into_bytes(), 400, "file_url_not_allowed"),
        ("file:// outside", url_case("file:///etc/passwd").to_string().into_bytes(), 400, "file_url_not_allowed"),
        ("file:// missing file", url_case(&format!("file://{}/nope.png", inside_c.display())).to_string().into_bytes(), 400, "file_url_not_allowed"),
        ("file:// relative", url_case("file://ok.png").to_string().into_bytes(), 400, "file_url_not_allowed"),
        ("file:// directory", url_case(&format!("file://{}", inside_c.display())).to_string().into_bytes(), 400, "file_url_not_allowed"),
        ("unknown model", with_field("model", json!("gpt-4o")).to_string().into_bytes(), 404, "model_not_found"),
        ("model is a number", with_field("model", json!(3)).to_string().into_bytes(), 400, "invalid_value"),
        ("no model with two served", { let mut r = image_request("x", 2); r.as_object_mut().unwrap().remove("model"); r }.to_string().into_bytes(), 400, "missing_model"),
        ("V = 0", with_field("visual_tokens", json!(0)).to_string().into_bytes(), 400, "invalid_visual_tokens"),
        ("V = 577", with_field("visual_tokens", json!(577)).to_string().into_bytes(), 400, "invalid_visual_tokens"),
        ("V = -4", with_field("visual_tokens", json!(-4)).to_string().into_bytes(), 400, "invalid_visual_tokens"),
        ("V = 9 (not (8/r)²)", with_field("visual_tokens", json!(9)).to_string().into_bytes(), 400, "invalid_visual_tokens"),
        ("V = 576 (over G² = 64)", with_field("visual_tokens", json!(576)).to_string().into_bytes(), 400, "invalid_visual_tokens"),
        ("V is a string", with_field("visual_tokens", json!("sixteen")).to_string().into_bytes(), 400, "invalid_value"),
        ("V is fractional", with_field("visual_tokens", json!(16.5)).to_string().into_bytes(), 400, "invalid_value"),
        ("V without image", json!({"model": "llava15_llama", "messages": [{"role": "user", "content": "hi"}], "visual_tokens": 16}).to_string().into_bytes(), 400, "no_image"),
        ("visionzip V = 65 (over G² = 64)", { let mut r = with_field("visual_tokens", json!(65)); r["token_reduction"] = json!("visionzip"); r }.to_string().into_bytes(), 400, "invalid_visual_tokens"),
        ("prumerge-plus with a V (it chooses V)", { let mut r = with_field("visual_tokens", json!(16)); r["token_reduction"] = json!("prumerge-plus"); r }.to_string().into_bytes(), 400, "invalid_visual_tokens"),
        ("fastv at K = 2 of a 2-layer LLM", { let mut r = with_field("visual_tokens", json!(16)); r["token_reduction"] = json!("fastv"); r }.to_string().into_bytes(), 400, "invalid_fastv_layer"),
        ("old name prumerge+", { let mut r = with_field("visual_tokens", json!(16)); r["token_reduction"] = json!("prumerge+"); r }.to_string().into_bytes(), 400, "invalid_token_reduction"),
        ("visionzip on a QueCC checkpoint", { let mut r = image_request("quecc_qwen2", 2); r["visual_tokens"] = json!(4); r["token_reduction"] = json!("visionzip"); r }.to_string().into_bytes(), 400, "token_reduction_not_applicable"),
        ("unknown token_reduction", with_field("token_reduction", json!("magic")).to_string().into_bytes(), 400, "invalid_token_reduction"),
        ("avgpool on a QueCC checkpoint", { let mut r = image_request("quecc_qwen2", 2); r["visual_tokens"] = json!(1); r["token_reduction"] = json!("avgpool"); r }.to_string().into_bytes(), 400, "token_reduction_not_applicable"),
        ("max_tokens = -1", with_field("max_tokens", json!(-1)).to_string().into_bytes(), 400, "invalid_value"),
        ("max_tokens = 0", with_field("max_tokens", json!(0)).to_string().into_bytes(), 400, "invalid_value"),
        ("max_completion_tokens = -5", with_field("max_completion_tokens", json!(-5)).to_string().into_bytes(), 400, "invalid_value"),
        ("max_tokens = 1.5", with_field("max_tokens", json!(1.5)).to_string().into_bytes(), 400, "invalid_value"),
        ("max_tokens = 1e30", b"{\"model\":\"quecc_qwen2\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":1e30}".to_vec(), 400, "invalid_value"),
        ("temperature = 3", with_field("temperature", json!(3)).to_string().into_bytes(), 400, "invalid_value"),
        ("temperature = -0.1", with_field("temperature", json!(-0.1)).to_string().into_bytes(), 400, "invalid_value"),
        ("temperature is a string", with_field("temperature", json!("hot")).to_string().into_bytes(), 400, "invalid_value"),
        ("top_p = 0", with_field("top_p", json!(0)).to_string().into_bytes(), 400, "invalid_value"),
        ("top_p = 1.5", with_field("top_p", json!(1.5)).to_string().into_bytes(), 400, "invalid_value"),
        ("n = 2", with_field("n", json!(2)).to_string().into_bytes(), 400, "invalid_value"),
        ("seed is a string", with_field("seed", json!("x")).to_string().into_bytes(), 400, "invalid_value"),
        ("five stop sequences", with_field("stop", json!(["a", "b", "c", "d", "e"])).to_string().into_bytes(), 400, "invalid_value"),
        ("empty stop sequence", with_field("stop", json!([""])).to_string().into_bytes(), 400, "invalid_value"),
        ("stop is a number", with_field("stop", json!(4)).to_string().into_bytes(), 400, "invalid_value"),
        ("stream is a string", with_field("stream", json!("yes")).to_string().into_bytes(), 400, "invalid_value"),
        ("budget with both kinds", with_field("budget", json!({"ttft_ms": 10, "flops": 1e9})).to_string().into_bytes(), 400, "invalid_budget"),
        ("budget empty", with_field("budget", json!({})).to_string().into_bytes(), 400, "invalid_budget"),
        ("budget negative", with_field("budget", json!({"flops": -1})).to_string().into_bytes(), 400, "invalid_budget"),
        ("budget unknown kind", with_field("budget", json!({"dollars": 1})).to_string().into_bytes(), 400, "invalid_value"),
        ("budget ttft without a profile", with_field("budget", json!({"ttft_ms": 100})).to_string().into_bytes(), 400, "latency_profile_missing"),
        ("budget too small", with_field("budget", json!({"flops": 1.0})).to_string().into_bytes(), 400, "budget_too_small"),
        ("budget and V", { let mut r = with_field("budget", json!({"flops": 1e12})); r["visual_tokens"] = json!(16); r }.to_string().into_bytes(), 400, "conflicting_parameters"),
        ("prompt over the context", text_with_image(&long_text, &image_url()).to_string().into_bytes(), 400, "context_length_exceeded"),
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for (label, body, status, code) in &cases {
        let r = s.chat_raw(body);
        assert_eq!(r.status, *status, "{label}: status; body {}", r.text());
        let j: Value =
            serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("{label}: not JSON ({e}): {}", r.text()));
        assert_eq!(j["error"]["code"], *code, "{label}: {j}");
        assert!(j["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{label}: {j}");
        assert!(j["error"]["type"].is_string() && j["error"].get("param").is_some(), "{label}: {j}");
        still_serving(&s);
    }
    // Param paths point at the field at fault.
    // (Inside a part, serde's tagged enums buffer the part: the path stops at the part.)
    let r = s.chat_raw(with("/messages/0/content/1/image_url/url", json!(7)).to_string().as_bytes());
    assert_eq!(r.json()["error"]["param"], "messages[0].content[1]");
    let r = s.chat_raw(with_field("max_tokens", json!("many")).to_string().as_bytes());
    assert_eq!(r.json()["error"]["param"], "max_tokens");
    let r = s.chat_raw(url_case("http://x/y.png").to_string().as_bytes());
    assert_eq!(r.json()["error"]["param"], "messages[0].content[1].image_url.url");
    println!("{} bad requests answered with their errors, each followed by a successful request", cases.len());

    // Methods, paths, bodies over the limit.
    assert_error(&s.get("/v1/chat/completions"), 405, "method_not_allowed");
    still_serving(&s);
    assert_error(&s.post_json("/v1/completion", &json!({})), 404, "not_found");
    still_serving(&s);
    assert_error(&s.get("/nope"), 404, "not_found");
    still_serving(&s);
}

#[test]
fn oversized_bodies_get_413() {
    let s = TestServer::start(config());
    // A 64 MB body announced with `Expect: 100-continue`: refused before it is sent.
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n",
        64 << 20
    );
    c.write_all(head.as_bytes()).unwrap();
    let r = read_response(&mut c);
    assert_error(&r, 413, "body_too_large");
    still_serving(&s);

    // A 64 MB body sent without waiting: the server answers 413 after at most its limit.
    let big = vec![b' '; 64 << 20];
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        big.len()
    );
    c.write_all(head.as_bytes()).unwrap();
    let mut reader = c.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = c.write_all(&big);
    });
    let mut raw = vec![];
    let _ = reader.read_to_end(&mut raw);
    writer.join().unwrap();
    let r = parse_response(&raw);
    assert_error(&r, 413, "body_too_large");
    still_serving(&s);

    // A chunked body (no Content-Length) over the limit.
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    c.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n").unwrap();
    let mut reader = c.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..8 {
            let mut piece = format!("{:x}\r\n", chunk.len()).into_bytes();
            piece.extend_from_slice(&chunk);
            piece.extend_from_slice(b"\r\n");
            if c.write_all(&piece).is_err() {
                return;
            }
        }
        let _ = c.write_all(b"0\r\n\r\n");
    });
    let mut raw = vec![];
    let _ = reader.read_to_end(&mut raw);
    writer.join().unwrap();
    assert_error(&parse_response(&raw), 413, "body_too_large");
    still_serving(&s);
}

#[test]
fn client_disconnect_mid_stream_cancels_and_the_server_keeps_serving() {
    let s = TestServer::start(config());
    for _ in 0..3 {
        let mut req = image_request("llava15_llama", 200);
        req["stream"] = json!(true);
        let body = req.to_string();
        let mut c = TcpStream::connect(s.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        c.write_all(head.as_bytes()).unwrap();
        c.write_all(body.as_bytes()).unwrap();
        // Read the response head (sent with the first event), then hang up.
        let head = read_head(&mut c);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        drop(c);
        still_serving(&s);
    }
    let m = s.get("/metrics").text();
    assert!(m.contains("vlmscale_requests_total{path=\"/v1/chat/completions\",status=\"200\"}"), "{m}");
    println!(
        "mid-stream disconnects: {:?} cancelled, {:?} completion tokens in all",
        s.metric("vlmscale_errors_total{kind=\"client_disconnected\"}"),
        s.metric("vlmscale_completion_tokens_total")
    );
}

#[test]
fn a_full_queue_answers_429_with_retry_after() {
    let mut cfg = config();
    cfg.queue_capacity = 2;
    cfg.hold_worker = true;
    let s = TestServer::start(cfg);
    let addr = s.addr;
    let body = image_request("quecc_qwen2", 2).to_string();
    let waiting: Vec<_> = (0..2)
        .map(|_| {
            let body = body.clone();
            std::thread::spawn(move || {
                request(addr, "POST", "/v1/chat/completions", &[("Content-Type", "application/json")], body.as_bytes())
            })
        })
        .collect();
    // Wait (bounded) until both are queued behind the held worker.
    let mut queued = false;
    for _ in 0..2000 {
        if s.metric("vlmscale_queue_depth") == Some(2.0) {
            queued = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(queued, "two requests queued");
    let r = s.chat_raw(body.as_bytes());
    assert_error(&r, 429, "queue_full");
    assert_eq!(r.header("retry-after"), Some("1"));
    s.release_worker();
    for w in waiting {
        assert_eq!(w.join().unwrap().status, 200, "queued requests are served");
    }
    still_serving(&s);
    assert_eq!(s.metric("vlmscale_errors_total{kind=\"queue_full\"}"), Some(1.0));
}

#[test]
fn a_request_over_the_timeout_gets_504() {
    let mut cfg = config();
    cfg.request_timeout = Duration::ZERO;
    let s = TestServer::start(cfg);
    assert_error(&s.chat(&image_request("quecc_qwen2", 2)), 504, "timeout");
    let mut req = image_request("quecc_qwen2", 2);
    req["stream"] = json!(true);
    assert_error(&s.chat(&req), 504, "timeout");
}

#[test]
fn shutdown_finishes_in_flight_requests_and_refuses_new_ones() {
    let mut cfg = config();
    cfg.hold_worker = true;
    let mut s = TestServer::start(cfg);
    let addr = s.addr;
    let body = image_request("quecc_qwen2", 12).to_string();
    let in_flight = std::thread::spawn(move || {
        request(addr, "POST", "/v1/chat/completions", &[("Content-Type", "application/json")], body.as_bytes())
    });
    let mut queued = false;
    for _ in 0..2000 {
        if s.metric("vlmscale_queue_depth") == Some(1.0) {
            queued = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(queued, "the first request is in flight");
    s.signal_shutdown();
    let mut draining = false;
    for _ in 0..2000 {
        if s.get("/health").status == 503 {
            draining = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(draining, "health reports shutting down");
    let r = s.chat(&image_request("quecc_qwen2", 2));
    assert_error(&r, 503, "shutting_down");
    assert!(r.header("retry-after").is_some());
    s.release_worker();
    let done = in_flight.join().unwrap();
    assert_eq!(done.status, 200, "the in-flight request finishes: {}", done.text());
    assert_eq!(done.json()["usage"]["completion_tokens"], 10, "the whole answer (the reference stops after 10 tokens)");
    s.join();
    assert!(TcpStream::connect(addr).is_err(), "the server has stopped listening");
}

#[test]
fn a_request_whose_client_left_while_queued_never_runs() {
    let mut cfg = config();
    cfg.hold_worker = true;
    let s = TestServer::start(cfg);
    let body = image_request("quecc_qwen2", 2).to_string();
    let mut c = TcpStream::connect(s.addr).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(body.as_bytes()).unwrap();
    let mut queued = false;
    for _ in 0..2000 {
        if s.metric("vlmscale_queue_depth") == Some(1.0) {
            queued = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(queued, "the request is queued");
    drop(c);
    // The server notices the closed connection and drops the request; the worker skips it.
    let mut in_flight_gone = false;
    for _ in 0..2000 {
        if s.get("/health").json()["in_flight"] == 0 {
            in_flight_gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(in_flight_gone, "the disconnected request is no longer in flight");
    s.release_worker();
    still_serving(&s);
    assert_eq!(s.metric("vlmscale_errors_total{kind=\"client_disconnected\"}"), Some(1.0));
    assert_eq!(s.metric("vlmscale_completions_total{model=\"quecc_qwen2\"}"), Some(1.0), "only the normal request ran");
}

#[test]
fn requests_still_running_after_the_shutdown_grace_are_cut() {
    let mut cfg = config();
    cfg.hold_worker = true;
    cfg.shutdown_grace = Duration::ZERO;
    let mut s = TestServer::start(cfg);
    let body = image_request("quecc_qwen2", 2).to_string();
    let mut c = TcpStream::connect(s.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).unwrap();
    c.write_all(body.as_bytes()).unwrap();
    let mut queued = false;
    for _ in 0..2000 {
        if s.metric("vlmscale_queue_depth") == Some(1.0) {
            queued = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(queued, "the request is queued behind the held worker");
    // The worker stays held: the request cannot finish, so the server cuts it and stops.
    s.signal_shutdown();
    s.join();
    // The cut request gets a 503 if its connection is still served at that moment, else the
    // connection just closes.
    let mut raw = vec![];
    let _ = c.read_to_end(&mut raw);
    if !raw.is_empty() {
        assert_error(&parse_response(&raw), 503, "shutting_down");
    }
}

/// Slow clients ("slowloris"): a connection that sends nothing, and one that sends half a header
/// and stalls, are closed once the header timeout passes, while other clients are served meanwhile.
#[test]
fn connections_that_stall_in_the_header_are_closed() {
    let config =
        ServeConfig { header_timeout: Duration::from_millis(800), ..ServeConfig::new(vec![fixture("quecc_qwen2")]) };
    let s = TestServer::start(config);
    let mut silent = TcpStream::connect(s.addr).unwrap();
    let mut partial = TcpStream::connect(s.addr).unwrap();
    partial.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: app").unwrap();
    // Served while the two stall.
    still_serving(&s);
    let t0 = std::time::Instant::now();
    for stream in [&mut silent, &mut partial] {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 512];
        // Closed by the server: EOF (possibly after a 408 response) or a reset, not a read timeout.
        loop {
            match stream.read(&mut buf) {
                Ok(0) => break,
                Ok(_) => continue,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                Err(e) => panic!("the stalled connection was not closed: {e}"),
            }
        }
    }
    let waited = t0.elapsed();
    assert!(waited < Duration::from_secs(8), "closed after {waited:?}");
    still_serving(&s);
}

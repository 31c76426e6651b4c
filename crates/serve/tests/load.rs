//! Load on loopback, bounded: 8 concurrent clients × 50 requests each, mixing models, V and
//! streaming, against the tiny checkpoints. Every request must succeed; p50 / p99 TTFT (as the
//! server reports it: arrival to first token, queueing included) and aggregate tokens/s are printed,
//! not asserted.
mod common;

use std::time::Instant;

use common::*;
use serde_json::json;
use serve::ServeConfig;

const CLIENTS: usize = 8;
const PER_CLIENT: usize = 50;

#[test]
fn eight_clients_mixed_requests_all_succeed() {
    let s = TestServer::start(ServeConfig::new(vec![fixture("quecc_qwen2"), fixture("llava15_llama")]));
    let addr = s.addr;
    let url = image_url();
    let t0 = Instant::now();
    let workers: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let url = url.clone();
            std::thread::spawn(move || {
                let mut out = vec![];
                for i in 0..PER_CLIENT {
                    let k = c * PER_CLIENT + i;
                    let (model, v) = match k % 4 {
                        0 => ("quecc_qwen2", None),
                        1 => ("llava15_llama", None),
                        2 => ("llava15_llama", Some(16)),
                        _ => ("llava15_llama", Some(1)),
                    };
                    let stream = k.is_multiple_of(2);
                    let mut req = json!({
                        "model": model,
                        "messages": [{"role": "user", "content": [
                            {"type": "text", "text": QUESTION},
                            {"type": "image_url", "image_url": {"url": url}},
                        ]}],
                        "max_tokens": 16, "temperature": 0.7, "seed": k, "stream": stream,
                    });
                    if let Some(v) = v {
                        req["visual_tokens"] = json!(v);
                    }
                    let r = request(
                        addr,
                        "POST",
                        "/v1/chat/completions",
                        &[("Content-Type", "application/json")],
                        req.to_string().as_bytes(),
                    );
                    out.push((r.status, stream, r));
                }
                out
            })
        })
        .collect();
    let mut ttft = vec![];
    let mut tokens = 0u64;
    let mut failed = 0;
    for w in workers {
        for (status, stream, r) in w.join().unwrap() {
            if status != 200 {
                failed += 1;
                println!("failed: {status} {}", r.text());
                continue;
            }
            let info = if stream {
                let last = r.sse_data().iter().rev().find_map(|d| {
                    serde_json::from_str::<serde_json::Value>(d).ok().filter(|j| j.get("vlmscale").is_some())
                });
                let Some(last) = last else {
                    failed += 1;
                    println!("stream without a final chunk: {}", r.text());
                    continue;
                };
                last["vlmscale"].clone()
            } else {
                let j = r.json();
                tokens += j["usage"]["completion_tokens"].as_u64().unwrap();
                j["vlmscale"].clone()
            };
            ttft.push(info["ttft_ms"].as_f64().unwrap());
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    ttft.sort_by(f64::total_cmp);
    let pct = |p: f64| ttft[((ttft.len() - 1) as f64 * p).round() as usize];
    let completion_total = s.metric("vlmscale_completion_tokens_total").unwrap();
    println!(
        "{} requests from {CLIENTS} clients in {secs:.2} s: {failed} failed; TTFT p50 {:.1} ms, p99 {:.1} ms; {:.0} generated tokens/s aggregate ({} tokens)",
        CLIENTS * PER_CLIENT,
        pct(0.5),
        pct(0.99),
        completion_total / secs,
        completion_total
    );
    assert_eq!(failed, 0, "every request succeeds");
    assert_eq!(ttft.len(), CLIENTS * PER_CLIENT);
    assert!(tokens > 0);
    assert_eq!(s.metric("vlmscale_errors_total{kind=\"queue_full\"}"), None, "the queue (64) never filled");
}

//! The server answering well-formed requests against the engine's tiny committed checkpoints:
//! the greedy answer is the PyTorch reference's (the engine fixtures' `expected.json`), `usage` counts
//! the visual tokens actually used, streaming reproduces the same text, per-request V and budgets are
//! honoured and reported, and the side endpoints answer.
mod common;

use common::*;
use scaling::cost::latency::LatencyProfile;
use scaling::law::{Law, TokenAxis};
use serde_json::{json, Value};
use serve::{Planner, ServeConfig};

/// An illustrative law with α > β > 0.
const LAW: Law = Law::Multiplicative { a: 0.3, alpha: 0.08, beta: 0.01, d: 0.2 };

fn planner(latency: Option<LatencyProfile>) -> Planner {
    Planner { law: LAW, axis: TokenAxis::Visual, origin: "test".into(), latency }
}

fn both_models() -> ServeConfig {
    let mut c = ServeConfig::new(vec![fixture("quecc_qwen2"), fixture("llava15_llama")]);
    c.planner = Some(planner(None));
    c
}

fn expected_answer(model: &str) -> String {
    let text = std::fs::read_to_string(fixture(model).join("expected.json")).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    v["answer"].as_str().unwrap().to_string()
}

fn content(j: &Value) -> String {
    j["choices"][0]["message"]["content"].as_str().unwrap().to_string()
}

/// Concatenated `delta.content` of an SSE body, its final chunk (with `vlmscale`), and the usage chunk.
fn streamed(resp: &Resp) -> (String, Value, Option<Value>) {
    let data = resp.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "ends with [DONE]: {data:?}");
    let chunks: Vec<Value> = data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant", "the first chunk opens the message");
    let mut text = String::new();
    let mut last = None;
    let mut usage = None;
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        if let Some(choice) = c["choices"].get(0) {
            if let Some(t) = choice["delta"]["content"].as_str() {
                text.push_str(t);
            }
            if !choice["finish_reason"].is_null() {
                last = Some(c.clone());
            }
        } else {
            usage = Some(c["usage"].clone());
        }
    }
    (text, last.expect("a chunk with finish_reason"), usage)
}

#[test]
fn greedy_answers_match_the_pytorch_reference_and_usage_counts_visual_tokens() {
    let s = TestServer::start(both_models());
    for (model, v) in [("quecc_qwen2", 4), ("llava15_llama", 64)] {
        let r = s.chat(&image_request(model, 12));
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        assert_eq!(j["object"], "chat.completion");
        assert_eq!(j["model"], model);
        assert!(j["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert_eq!(content(&j), expected_answer(model), "{model}: the reference's greedy answer");
        let (q, served_v) =
            (j["vlmscale"]["text_tokens"].as_u64().unwrap(), j["vlmscale"]["visual_tokens"].as_u64().unwrap());
        assert_eq!(served_v, v, "{model}: native V");
        assert!(q > 10, "the template alone has more than 10 tokens");
        assert_eq!(j["usage"]["prompt_tokens"].as_u64().unwrap(), q + v, "prompt tokens count V");
        let completion = j["usage"]["completion_tokens"].as_u64().unwrap();
        assert_eq!(j["usage"]["total_tokens"].as_u64().unwrap(), q + v + completion);
        // quecc_qwen2's reference produced 10 tokens and the stop token; llava15_llama's 12 (max_new_tokens).
        let (want_tokens, want_finish) = if model == "quecc_qwen2" { (10, "stop") } else { (12, "length") };
        assert_eq!(completion, want_tokens, "{model}");
        assert_eq!(j["choices"][0]["finish_reason"], want_finish, "{model}");
        let n = j["vlmscale"]["llm_params"].as_f64().unwrap();
        assert_eq!(j["vlmscale"]["prompt_flops"].as_f64().unwrap(), 2.0 * n * (q + v) as f64, "2·N·(Q+V)");
        let label = if model == "quecc_qwen2" { "trained:quecc" } else { "none" };
        assert_eq!(j["vlmscale"]["token_reduction"], label);
    }
}

#[test]
fn streaming_gives_the_same_text_in_chunks_ending_with_done() {
    let s = TestServer::start(both_models());
    for model in ["quecc_qwen2", "llava15_llama"] {
        let whole = s.chat(&image_request(model, 12)).json();
        let mut req = image_request(model, 12);
        req["stream"] = json!(true);
        req["stream_options"] = json!({"include_usage": true});
        let r = s.chat(&req);
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(r.header("content-type").unwrap().starts_with("text/event-stream"));
        let (text, last, usage) = streamed(&r);
        assert_eq!(text, content(&whole), "{model}: streamed = whole");
        assert_eq!(last["choices"][0]["finish_reason"], whole["choices"][0]["finish_reason"]);
        assert_eq!(last["vlmscale"]["visual_tokens"], whole["vlmscale"]["visual_tokens"]);
        assert_eq!(usage.expect("include_usage gives a usage chunk"), whole["usage"]);
    }
}

#[test]
fn seeded_sampling_repeats_and_stop_sequences_cut_the_answer() {
    let s = TestServer::start(both_models());
    let mut req = image_request("llava15_llama", 10);
    req["temperature"] = json!(1.0);
    req["top_p"] = json!(0.9);
    req["seed"] = json!(1234);
    let a = content(&s.chat(&req).json());
    let b = content(&s.chat(&req).json());
    assert_eq!(a, b, "same seed, same sample");

    // Greedy answer of the QueCC checkpoint, then a stop sequence taken from inside it.
    let full = content(&s.chat(&image_request("quecc_qwen2", 12)).json());
    let chars: Vec<char> = full.chars().collect();
    assert!(chars.len() >= 8, "answer long enough: {full:?}");
    let stop: String = chars[4..6].iter().collect();
    let cut = full.find(&stop).unwrap();
    for stream in [false, true] {
        let mut req = image_request("quecc_qwen2", 12);
        req["stop"] = json!([stop.clone()]);
        req["stream"] = json!(stream);
        let r = s.chat(&req);
        let (text, finish) = if stream {
            let (t, last, _) = streamed(&r);
            (t, last["choices"][0]["finish_reason"].clone())
        } else {
            let j = r.json();
            (content(&j), j["choices"][0]["finish_reason"].clone())
        };
        assert_eq!(text, full[..cut], "stream = {stream}: the answer up to the stop sequence");
        assert_eq!(finish, "stop");
    }
}

#[test]
fn visual_tokens_per_request() {
    let s = TestServer::start(both_models());
    let native = s.chat(&image_request("llava15_llama", 4)).json();
    let q = native["vlmscale"]["text_tokens"].as_u64().unwrap();
    for v in [1u64, 4, 16] {
        let mut req = image_request("llava15_llama", 4);
        req["visual_tokens"] = json!(v);
        let j = s.chat(&req).json();
        assert_eq!(j["vlmscale"]["visual_tokens"], v);
        assert_eq!(j["vlmscale"]["token_reduction"], "avgpool");
        assert_eq!(j["usage"]["prompt_tokens"].as_u64().unwrap(), q + v, "V = {v} is what the prompt costs");
        assert!(j["vlmscale"]["note"].as_str().unwrap().contains("avgpool"), "the default method is reported");
    }
    let mut req = image_request("llava15_llama", 4);
    req["visual_tokens"] = json!(16);
    req["token_reduction"] = json!("avgpool");
    let j = s.chat(&req).json();
    assert_eq!(j["vlmscale"]["visual_tokens"], 16);
    assert!(j["vlmscale"].get("note").is_none(), "explicit method: no note");

    // Every engine method under its engine name: the greedy answer is the engine's reduction parity
    // fixture's (crates/engine/tests/fixtures/reduction, from the reference implementations), and the
    // prompt costs Q + V (FastV: the V its layers ≥ K keep).
    let fixture_ids: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("../reduction/expected.json")).unwrap()).unwrap();
    let tokenizer = engine::text::TextTokenizer::from_file(&fixture("llava15_llama").join("tokenizer.json")).unwrap();
    let max = fixture_ids["max_new_tokens"].as_u64().unwrap() as usize;
    for (method, key) in
        [("visionzip", "visionzip_v16"), ("fastv", "fastv_k1_v16"), ("prumerge-plus-fixed", "prumerge-plus-fixed_v16")]
    {
        let mut req = image_request("llava15_llama", max);
        req["visual_tokens"] = json!(16);
        req["token_reduction"] = json!(method);
        if method == "fastv" {
            req["fastv_layer"] = fixture_ids["fastv_k"].clone();
        }
        let r = s.chat(&req);
        assert_eq!(r.status, 200, "{method}: {}", r.text());
        let j = r.json();
        assert_eq!(j["vlmscale"]["visual_tokens"], 16, "{method}");
        assert_eq!(j["vlmscale"]["token_reduction"], method);
        assert_eq!(j["usage"]["prompt_tokens"].as_u64().unwrap(), q + 16, "{method}: Q + V");
        let ids: Vec<u32> = fixture_ids[key].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(content(&j), tokenizer.decode(&ids, true).unwrap(), "{method}: the reference's greedy answer");
    }

    // The QueCC checkpoint serves its trained V = 4 and says so.
    let mut req = image_request("quecc_qwen2", 4);
    req["visual_tokens"] = json!(16);
    let j = s.chat(&req).json();
    assert_eq!(j["vlmscale"]["visual_tokens"], 4);
    assert_eq!(j["vlmscale"]["requested_visual_tokens"], 16);
    assert_eq!(j["vlmscale"]["token_reduction"], "trained:quecc");
    assert!(j["vlmscale"]["note"].as_str().unwrap().contains("V = 4"));
}

/// The candidates the server may pick from, with their costs computed here from `/v1/models` and
/// each model's Q (measured by a native request): the choice must be the lowest predicted error
/// among those within budget.
fn brute_force(s: &TestServer, cost: &dyn Fn(f64, f64, f64) -> f64, budget: f64) -> (String, u64) {
    let models = s.get("/v1/models").json();
    let mut best: Option<(f64, f64, String, u64)> = None;
    for m in models["data"].as_array().unwrap() {
        let id = m["id"].as_str().unwrap().to_string();
        let n_b = m["vlmscale"]["llm_params"].as_f64().unwrap() / 1e9;
        let q = s.chat(&image_request(&id, 1)).json()["vlmscale"]["text_tokens"].as_f64().unwrap();
        let mut vs: Vec<u64> = vec![m["vlmscale"]["visual_tokens"].as_u64().unwrap()];
        for r in
            m["vlmscale"]["token_reductions"].as_array().unwrap().iter().filter(|r| r["token_reduction"] == "avgpool")
        {
            vs.extend(r["visual_tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()));
        }
        for v in vs {
            let c = cost(n_b, q, v as f64);
            if c > budget {
                continue;
            }
            let err = LAW.predict(n_b, v as f64);
            if best.as_ref().is_none_or(|b| err < b.0 || (err == b.0 && c < b.1)) {
                best = Some((err, c, id.clone(), v));
            }
        }
    }
    let b = best.expect("some candidate fits");
    (b.2, b.3)
}

#[test]
fn flops_budget_picks_the_frontier_choice_and_reports_it() {
    let s = TestServer::start(both_models());
    let flops = |n_b: f64, q: f64, v: f64| 2.0 * n_b * 1e9 * (q + v);
    let native = s.chat(&image_request("llava15_llama", 1)).json();
    let full_cost = native["vlmscale"]["prompt_flops"].as_f64().unwrap();
    // Budgets around the plain model's full cost: below it only pooled V or the other model fit.
    for budget in [full_cost * 0.5, full_cost * 0.8, full_cost * 1.5, full_cost * 10.0] {
        let (want_model, want_v) = brute_force(&s, &flops, budget);
        let mut req = image_request("auto", 2);
        req["budget"] = json!({"flops": budget});
        req["token_reduction"] = json!("avgpool");
        let r = s.chat(&req);
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        let b = &j["vlmscale"]["budget"];
        assert_eq!((b["model"].as_str().unwrap(), b["visual_tokens"].as_u64().unwrap()), (want_model.as_str(), want_v));
        assert_eq!(j["model"], want_model.as_str());
        assert_eq!(j["vlmscale"]["visual_tokens"], want_v, "the choice is what was served");
        assert!(b["cost"].as_f64().unwrap() <= budget);
        assert_eq!(b["cost"].as_f64().unwrap(), j["vlmscale"]["prompt_flops"].as_f64().unwrap(), "cost = served FLOPs");
        assert_eq!(b["kind"], "flops");
        assert_eq!(b["candidates"], 5, "quecc: its trained 4; plain: 1, 4, 16, 64");
    }
}

#[test]
fn ttft_budget_uses_the_latency_profile() {
    let profile = LatencyProfile {
        machine: "test".into(),
        vision_ms: 5.0,
        compressor_ms: 1.0,
        prefill_ms_per_token_per_billion: 20_000.0,
        decode_ms_per_token_per_billion: 40_000.0,
        quecc_query_pass: false,
        formats: vec![],
    };
    let mut cfg = ServeConfig::new(vec![fixture("llava15_llama")]);
    cfg.planner = Some(planner(Some(profile.clone())));
    let s = TestServer::start(cfg);
    let ttft = |n_b: f64, q: f64, v: f64| profile.ttft_seconds(n_b, q, v) * 1e3;
    let native = s.chat(&image_request("llava15_llama", 1)).json();
    let n_b = native["vlmscale"]["llm_params"].as_f64().unwrap() / 1e9;
    let q = native["vlmscale"]["text_tokens"].as_f64().unwrap();
    // Between V = 4 and V = 16: V = 4 is the most the budget affords.
    let budget = (ttft(n_b, q, 4.0) + ttft(n_b, q, 16.0)) / 2.0;
    assert_eq!(brute_force(&s, &ttft, budget), ("llava15_llama".to_string(), 4));
    let mut req = image_request("llava15_llama", 2);
    req["budget"] = json!({"ttft_ms": budget});
    req["token_reduction"] = json!("avgpool");
    let j = s.chat(&req).json();
    assert_eq!(j["vlmscale"]["visual_tokens"], 4, "{j}");
    assert!((j["vlmscale"]["budget"]["cost"].as_f64().unwrap() - ttft(n_b, q, 4.0)).abs() < 1e-9);
    // The same budget without a reduction method: only the native V = 64, which does not fit.
    req.as_object_mut().unwrap().remove("token_reduction");
    assert_error(&s.chat(&req), 400, "budget_too_small");
}

#[test]
fn side_endpoints() {
    let s = TestServer::start(both_models());
    let h = s.get("/health");
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["status"], "ok");
    let m = s.get("/v1/models").json();
    assert_eq!(m["object"], "list");
    let ids: Vec<&str> = m["data"].as_array().unwrap().iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["quecc_qwen2", "llava15_llama"]);
    assert_eq!(m["data"][0]["vlmscale"]["visual_tokens"], 4);
    assert_eq!(m["data"][0]["vlmscale"]["compressor"], "quecc");
    assert_eq!(m["data"][1]["vlmscale"]["visual_tokens"], 64);
    let reductions = m["data"][1]["vlmscale"]["token_reductions"].as_array().unwrap();
    let names: Vec<&str> = reductions.iter().map(|r| r["token_reduction"].as_str().unwrap()).collect();
    assert_eq!(names, ["visionzip", "cls-topk", "prumerge-plus", "prumerge-plus-fixed", "avgpool", "fastv"]);
    assert_eq!(reductions[4]["visual_tokens"], json!([1, 4, 16, 64]));
    assert_eq!(reductions[0]["visual_tokens"], json!((1..=64).collect::<Vec<u64>>()));
    let page = s.get("/");
    assert_eq!(page.status, 200);
    assert!(page.text().contains("<title>vlmscale serve</title>"));

    let ok = s.chat(&image_request("llava15_llama", 3));
    assert_eq!(ok.status, 200);
    assert_eq!(s.chat(&image_request("quecc_qwen2", 3)).status, 200);
    assert_error(&s.chat_raw(b"{"), 400, "invalid_json");
    let metrics = s.get("/metrics");
    assert!(metrics.header("content-type").unwrap().starts_with("text/plain"));
    assert_eq!(s.metric("vlmscale_requests_total{path=\"/v1/chat/completions\",status=\"200\"}"), Some(2.0));
    assert_eq!(s.metric("vlmscale_requests_total{path=\"/v1/chat/completions\",status=\"400\"}"), Some(1.0));
    assert_eq!(s.metric("vlmscale_errors_total{kind=\"invalid_json\"}"), Some(1.0));
    assert_eq!(s.metric("vlmscale_visual_tokens_total"), Some(68.0), "64 + 4");
    assert_eq!(s.metric("vlmscale_ttft_seconds_count"), Some(2.0));
    assert_eq!(s.metric("vlmscale_completion_tokens_total"), Some(6.0));
    assert_eq!(
        s.metric("vlmscale_token_latency_seconds_count"),
        Some(4.0),
        "two decode steps per request (neither reference answer stops before 3 tokens)"
    );
    assert_eq!(s.metric("vlmscale_queue_depth"), Some(0.0));
}

#[test]
fn text_only_and_local_files() {
    let media = tempfile::tempdir().unwrap();
    std::fs::copy(image_path(), media.path().join("cat photo.png")).unwrap();
    let mut cfg = ServeConfig::new(vec![fixture("llava15_llama")]);
    cfg.media.allowed_local_dir = Some(media.path().to_path_buf());
    let s = TestServer::start(cfg);
    // Text only: V = 0; `model` may be omitted with one model served.
    let j =
        s.chat(&json!({"messages": [{"role": "user", "content": "Hello"}], "max_tokens": 3, "temperature": 0})).json();
    assert_eq!(j["vlmscale"]["visual_tokens"], 0);
    assert_eq!(j["usage"]["prompt_tokens"], j["vlmscale"]["text_tokens"]);
    // A file:// URL inside the allowed directory (percent-encoded space) answers as the data: URL does.
    let url = format!("file://{}", media.path().canonicalize().unwrap().join("cat%20photo.png").display());
    let mut req = image_request("llava15_llama", 12);
    req["messages"][0]["content"][1]["image_url"]["url"] = json!(url);
    let r = s.chat(&req);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(content(&r.json()), expected_answer("llava15_llama"));
}

#[test]
fn api_key_is_required_when_set() {
    let mut cfg = ServeConfig::new(vec![fixture("quecc_qwen2")]);
    cfg.api_key = Some("sekrit".into());
    let s = TestServer::start(cfg);
    let body = image_request("quecc_qwen2", 2).to_string();
    let send = |auth: Option<&str>| {
        let mut h = vec![("Content-Type", "application/json")];
        if let Some(a) = auth {
            h.push(("Authorization", a));
        }
        request(s.addr, "POST", "/v1/chat/completions", &h, body.as_bytes())
    };
    assert_error(&send(None), 401, "invalid_api_key");
    assert_error(&send(Some("Bearer wrong")), 401, "invalid_api_key");
    assert_error(&send(Some("sekrit")), 401, "invalid_api_key");
    assert_eq!(send(Some("Bearer sekrit")).status, 200);
    assert_error(&s.get("/v1/models"), 401, "invalid_api_key");
    assert_eq!(s.get("/health").status, 200, "health needs no key");
}

/// Continuous batching: four greedy requests queued together (two models, two V, one without an
/// image) are decoded in shared steps and answer exactly what each answers alone.
#[test]
fn concurrent_requests_share_decode_steps_and_answer_as_alone() {
    let mut requests = vec![image_request("quecc_qwen2", 12), image_request("llava15_llama", 12)];
    let mut v16 = image_request("llava15_llama", 10);
    v16["visual_tokens"] = json!(16);
    requests.push(v16);
    requests.push(json!({"model": "llava15_llama", "messages": [{"role": "user", "content": "Say something."}],
                         "max_tokens": 8, "temperature": 0}));
    let alone: Vec<String> = {
        let s = TestServer::start(both_models());
        requests.iter().map(|r| content(&s.chat(r).json())).collect()
    };
    let s = TestServer::start(ServeConfig { hold_worker: true, ..both_models() });
    let addr = s.addr;
    let threads: Vec<_> = requests
        .iter()
        .map(|r| {
            let body = serde_json::to_vec(r).unwrap();
            std::thread::spawn(move || request(addr, "POST", "/v1/chat/completions", &[], &body))
        })
        .collect();
    let mut queued = false;
    for _ in 0..2000 {
        if s.metric("vlmscale_queue_depth") == Some(requests.len() as f64) {
            queued = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(queued, "all requests queued behind the held worker");
    s.release_worker();
    let together: Vec<String> = threads
        .into_iter()
        .map(|t| {
            let r = t.join().unwrap();
            assert_eq!(r.status, 200, "{}", r.text());
            content(&r.json())
        })
        .collect();
    assert_eq!(together, alone, "batched answers = answers alone");
    let (steps, rows) =
        (s.metric("vlmscale_decode_steps_total").unwrap(), s.metric("vlmscale_decode_rows_total").unwrap());
    assert!(s.metric("vlmscale_decode_batch_max").unwrap() >= 3.0, "the llava15_llama requests shared steps");
    assert!(rows > steps, "mean batch {rows}/{steps} above one");
}

/// Multi-turn: a system message and an earlier exchange are written as LLaVA's `get_prompt` writes
/// them (the image in the first user turn): the prompt's text-token count equals that of the string
/// spelt out here by hand, tokenised by the model's tokenizer.
#[test]
fn multi_turn_conversations_use_the_templates_history() {
    let s = TestServer::start(both_models());
    let req = json!({
        "model": "llava15_llama",
        "messages": [
            {"role": "system", "content": "Answer briefly."},
            {"role": "user", "content": [{"type": "text", "text": QUESTION}, {"type": "image_url", "image_url": {"url": image_url()}}]},
            {"role": "assistant", "content": "A cat."},
            {"role": "user", "content": "What colour is it?"},
        ],
        "max_tokens": 4,
        "temperature": 0,
    });
    let r = s.chat(&req);
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let tokenizer = engine::text::TextTokenizer::from_file(&fixture("llava15_llama").join("tokenizer.json")).unwrap();
    let want =
        format!("Answer briefly. USER: <image>\n{QUESTION} ASSISTANT: A cat.</s>USER: What colour is it? ASSISTANT:");
    let q = tokenizer.tokenize_with_image(&want).unwrap().text_len() as u64;
    assert_eq!(j["vlmscale"]["text_tokens"].as_u64().unwrap(), q, "Q of the hand-written prompt");
    assert_eq!(j["vlmscale"]["visual_tokens"], 64);
}

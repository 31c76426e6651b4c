//! `vlmscale bench serve`: the server under load over real HTTP. A random-weight LLaVA-1.5-layout
//! checkpoint (CLIP ViT-L/14 at a chosen resolution, `mlp2x_gelu`, a Qwen-1.5 LLM shape — the shapes
//! and the weight creation of [`crate::infer`]: modules built on a [`VarMap`] with candle's init
//! hints — saved in bf16) is written to a directory, the `serve` crate's server is started in process
//! on 127.0.0.1 with an ephemeral port, and blocking HTTP/1.1 clients (one thread each) measure:
//!
//! - [`single`]: one streamed request — time to first token and decode tokens/s (client-side: from
//!   sending the request to the first content event, and between the first and the last);
//! - [`concurrent`]: S streamed requests at once — aggregate decode tokens/s over the window in which
//!   all S are decoding (and over the whole run), and its ratio to one stream;
//! - [`mixed_load`]: C clients × N requests each, mixing text-only requests, the native V and V
//!   reduced per request (`visual_tokens` + `token_reduction`), streamed and not — failures, p50 / p99
//!   TTFT as the server reports it (arrival to first token, queueing included), aggregate tokens/s.
//!
//! [`single`] and [`concurrent`] also run against llama.cpp's `llama-server` ([`LlamaServer`]) on the
//! same LLM weights as a BF16 GGUF (`peers/llama_server_peer.py gguf`), with prompts of the same
//! length as token ids (`/completion`). A benchmark, not a test: nothing asserts on time.
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::Barrier;
use std::time::{Duration, Instant};

use base64::Engine as _;
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use engine::{Error, Result};
use models::decoder::{Decoder, DecoderConfig};
use models::projector::{Projector, ProjectorKind, ProjectorLayout};
use models::reduction::ReductionMethod;
use models::vision::{ClipVisionConfig, ClipVisionTower};
use models::Mode;
use serde_json::{json, Value};

/// The LLM shapes `bench serve` builds: the Qwen-1.5 presets of [`crate::infer::qwen15_config_json`],
/// and `tiny` (a 4-layer, 64-wide Qwen2 with a 4-block, 32-wide CLIP: for smoke tests).
pub const SIZES: [&str; 3] = ["0.5b", "1.8b", "tiny"];

/// Id of the served model (the checkpoint directory's name).
pub const MODEL_ID: &str = "llava-qwen-random";

/// Token ids of `<|endoftext|>`, `<|im_start|>`, `<|im_end|>` in Qwen's tokenizer (at the end of a
/// smaller vocabulary instead).
const QWEN_SPECIAL: usize = 151_643;

fn invalid(msg: impl Into<String>) -> Error {
    Error::Invalid(msg.into())
}

/// The LLaVA `config.json` of a random checkpoint: the LLM's HF config ([`crate::infer::qwen15_config_json`]
/// or the tiny shape) with `model_type` `llava_qwen`, the CLIP tower's config embedded at
/// `image_size` pixels (patch 14: V = (image_size / 14)²), `mlp2x_gelu`, select layer −2, no compressor.
/// Errors: an unknown size; an image size that is not a positive multiple of 14.
pub fn llava_config_json(size: &str, image_size: usize) -> Result<Value> {
    let (mut cfg, mut vision) = match size {
        "tiny" => (
            json!({
                "model_type": "qwen2", "vocab_size": 512, "hidden_size": 64, "intermediate_size": 128,
                "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
                "max_position_embeddings": 4096, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
                "tie_word_embeddings": true, "hidden_act": "silu", "use_sliding_window": false,
            }),
            ClipVisionConfig {
                hidden_size: 32,
                intermediate_size: 64,
                num_hidden_layers: 4,
                num_attention_heads: 4,
                ..ClipVisionConfig::clip_vit_large_patch14_336()
            },
        ),
        s => (crate::infer::qwen15_config_json(s)?, ClipVisionConfig::clip_vit_large_patch14_336()),
    };
    if image_size == 0 || !image_size.is_multiple_of(vision.patch_size) {
        return Err(invalid(format!(
            "image size {image_size}: must be a positive multiple of the patch size {}",
            vision.patch_size
        )));
    }
    vision.image_size = image_size;
    let vocab = cfg["vocab_size"].as_u64().unwrap_or(0) as usize;
    let o = cfg.as_object_mut().ok_or_else(|| invalid("LLM config is not an object"))?;
    o.insert("model_type".into(), json!("llava_qwen"));
    o.insert("architectures".into(), json!(["LlavaQwenForCausalLM"]));
    o.insert("eos_token_id".into(), json!(special_base(vocab) + 2));
    o.insert(
        "vision_config".into(),
        json!({
            "hidden_size": vision.hidden_size, "intermediate_size": vision.intermediate_size,
            "num_hidden_layers": vision.num_hidden_layers, "num_attention_heads": vision.num_attention_heads,
            "num_channels": vision.num_channels, "image_size": vision.image_size, "patch_size": vision.patch_size,
            "hidden_act": vision.hidden_act, "layer_norm_eps": vision.layer_norm_eps,
        }),
    );
    o.insert("mm_vision_tower".into(), json!(format!("random-clip-vit-{size}-patch14-{image_size}")));
    o.insert("mm_projector_type".into(), json!("mlp2x_gelu"));
    o.insert("mm_hidden_size".into(), json!(vision.hidden_size));
    o.insert("mm_vision_select_layer".into(), json!(-2));
    o.insert("mm_vision_select_feature".into(), json!("patch"));
    o.insert("mm_patch_merge_type".into(), json!("flat"));
    o.insert("mm_use_im_start_end".into(), json!(false));
    o.insert("image_aspect_ratio".into(), json!("pad"));
    o.insert("tokenizer_model_max_length".into(), json!(4096));
    Ok(cfg)
}

/// Id of `<|endoftext|>` in a vocabulary of `vocab` tokens (`<|im_start|>`, `<|im_end|>` follow).
fn special_base(vocab: usize) -> usize {
    QWEN_SPECIAL.min(vocab.saturating_sub(3))
}

/// GPT-2's byte-to-character table of byte-level BPE (`bytes_to_unicode`).
fn byte_level_chars() -> Vec<char> {
    let printable = |b: u32| (33..=126).contains(&b) || (161..=172).contains(&b) || (174..=255).contains(&b);
    let mut extra = 0;
    (0..256u32)
        .map(|b| {
            if printable(b) {
                char::from_u32(b).unwrap_or('?')
            } else {
                extra += 1;
                char::from_u32(255 + extra).unwrap_or('?')
            }
        })
        .collect()
}

/// A byte-level BPE `tokenizer.json` of `vocab` tokens laid out as Qwen's: the 256 byte tokens first,
/// `<|endoftext|>`, `<|im_start|>`, `<|im_end|>` at 151643–151645 (or the last three ids of a smaller
/// vocabulary), every other id a word `Ġw<id>` (so that every id the random model samples decodes to
/// text; [`write_checkpoint`] keeps it from sampling the non-ASCII bytes). No merges: text is encoded
/// byte by byte. Errors: `vocab` < 259.
pub fn tokenizer_json(vocab: usize) -> Result<Value> {
    if vocab < 259 {
        return Err(invalid(format!("a vocabulary of {vocab} tokens has no room for the bytes and ChatML tokens")));
    }
    let s = special_base(vocab);
    let specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"];
    let mut map = serde_json::Map::with_capacity(vocab);
    for (i, c) in byte_level_chars().into_iter().enumerate() {
        map.insert(c.to_string(), json!(i));
    }
    for id in 256..vocab {
        if (s..s + 3).contains(&id) {
            map.insert(specials[id - s].to_string(), json!(id));
        } else {
            map.insert(format!("Ġw{id}"), json!(id));
        }
    }
    let added: Vec<Value> = specials
        .iter()
        .enumerate()
        .map(|(i, t)| {
            json!({"id": s + i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                   "normalized": false, "special": true})
        })
        .collect();
    Ok(json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": added, "normalizer": null,
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": map, "merges": []},
    }))
}

/// What [`write_checkpoint`] wrote.
#[derive(Debug, Clone)]
pub struct RandomCheckpoint {
    /// The checkpoint directory (its name is the model id).
    pub dir: PathBuf,
    /// Its `config.json`.
    pub config: Value,
    /// The LLM's configuration.
    pub llm: DecoderConfig,
    /// The vision tower's configuration.
    pub vision: ClipVisionConfig,
    /// Parameters written (tower, projector, LLM).
    pub parameters: usize,
    /// Seconds to create and write the weights.
    pub seconds: f64,
}

impl RandomCheckpoint {
    /// The side G of the patch grid (native V = G²).
    pub fn grid(&self) -> usize {
        self.vision.grid()
    }
}

/// Writes a random-weight plain LLaVA-1.5-layout checkpoint (`config.json`, `model.safetensors` in
/// bf16, `tokenizer.json`) of `size` ([`SIZES`]) at `image_size` pixels into `parent/`[`MODEL_ID`]:
/// every tower block (PruMerge+ scores with the last), the `mlp2x_gelu` projector and the LLM, created
/// as [`crate::infer::InferBench`] creates its weights, except that the embedding (and LM-head) rows
/// of the three ChatML tokens are zero, so that greedy answers do not end early. Errors: those of [`llava_config_json`]; creating
/// or writing the weights.
pub fn write_checkpoint(parent: &Path, size: &str, image_size: usize) -> Result<RandomCheckpoint> {
    let t0 = Instant::now();
    let config = llava_config_json(size, image_size)?;
    let llm = DecoderConfig::from_json_str(&config.to_string())?;
    let vision: ClipVisionConfig =
        serde_json::from_value(config["vision_config"].clone()).map_err(|e| invalid(format!("vision config: {e}")))?;
    let dir = parent.join(MODEL_ID);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| Error::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let device = Device::Cpu;
    let vars = VarMap::new();
    let vb = VarBuilder::from_varmap(&vars, DType::F32, &device);
    ClipVisionTower::new_with_depth(&vision, vision.num_hidden_layers, Mode::Inference, vb.pp("vision_model"))?;
    Projector::new(
        ProjectorKind::MlpGelu { depth: 2 },
        vision.hidden_size,
        llm.hidden_size,
        ProjectorLayout::Sequential,
        vb.pp("mm_projector"),
    )?;
    Decoder::new(&llm, vb)?;
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut parameters = 0;
    {
        let data = vars.data().lock().map_err(|_| invalid("weight store poisoned"))?;
        for (name, var) in data.iter() {
            let t = var.as_tensor();
            parameters += t.elem_count();
            let key = if let Some(rest) = name.strip_prefix("vision_model.") {
                format!("{}.{rest}", engine::vision::LLAVA_VISION_PREFIX)
            } else if name.starts_with("mm_projector.") {
                format!("model.{name}")
            } else {
                name.clone()
            };
            let t = if name == "model.embed_tokens.weight" || name == "lm_head.weight" {
                // The ChatML tokens' rows zero: their logits are 0 against the random others', so a
                // greedy answer never stops early (every request generates its max_tokens). The
                // non-ASCII byte tokens' rows too: a lone byte ≥ 0x80 is no UTF-8 text on its own, so
                // the detokeniser would hold it back and a streamed answer could arrive as one event.
                let (s, h) = (special_base(llm.vocab_size), t.dim(1)?);
                let t = t.slice_assign(&[s..s + 3, 0..h], &Tensor::zeros((3, h), t.dtype(), t.device())?)?;
                t.slice_assign(&[128..256, 0..h], &Tensor::zeros((128, h), t.dtype(), t.device())?)?
            } else {
                t.clone()
            };
            tensors.insert(key, t.to_dtype(DType::BF16)?);
        }
    }
    drop(vars);
    let weights = dir.join(engine::checkpoint::WEIGHTS_FILE);
    candle_core::safetensors::save(&tensors, &weights)?;
    drop(tensors);
    let write_json = |name: &str, v: &Value| {
        let p = dir.join(name);
        std::fs::write(&p, serde_json::to_vec_pretty(v).unwrap_or_default()).map_err(io(&p))
    };
    write_json("config.json", &config)?;
    write_json("tokenizer.json", &tokenizer_json(llm.vocab_size)?)?;
    Ok(RandomCheckpoint { dir, config, llm, vision, parameters, seconds: t0.elapsed().as_secs_f64() })
}

/// A noise PNG of `side` × `side` pixels (seeded) as a `data:` URL.
pub fn noise_png_data_url(side: usize, seed: u64) -> Result<String> {
    use rand::Rng;
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
    let side = side as u32;
    let img = image::RgbImage::from_fn(side, side, |_, _| image::Rgb([rng.random(), rng.random(), rng.random()]));
    let mut png = std::io::Cursor::new(Vec::new());
    img.write_to(&mut png, image::ImageFormat::Png).map_err(|e| invalid(format!("encoding the PNG: {e}")))?;
    Ok(format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png.into_inner())))
}

/// The vlmscale server running in this process (its own thread and tokio runtime).
pub struct InProcessServer {
    /// Where it listens.
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcessServer {
    /// Loads `config` and serves it on 127.0.0.1 with an ephemeral port. Errors: the server's
    /// (a checkpoint that does not load), binding the port.
    pub fn start(config: serve::ServeConfig) -> Result<Self> {
        let server = serve::Server::new(config).map_err(|e| invalid(format!("starting the server: {e}")))?;
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("bench-serve-http".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => return drop(addr_tx.send(Err(e.to_string()))),
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::bind("127.0.0.1:0").await {
                        Ok(l) => l,
                        Err(e) => return drop(addr_tx.send(Err(e.to_string()))),
                    };
                    let _ = addr_tx.send(listener.local_addr().map_err(|e| e.to_string()));
                    let stop = async move {
                        let _ = stop_rx.await;
                    };
                    if let Err(e) = server.serve(listener, stop).await {
                        eprintln!("bench serve: the server stopped with an error: {e}");
                    }
                });
            })
            .map_err(|e| invalid(format!("server thread: {e}")))?;
        let addr = addr_rx
            .recv()
            .map_err(|_| invalid("the server thread ended before listening"))?
            .map_err(|e| invalid(format!("binding 127.0.0.1:0: {e}")))?;
        Ok(Self { addr, stop: Some(stop_tx), thread: Some(thread) })
    }

    /// Stops the server (as SIGTERM would) and waits for it.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// An HTTP response read by [`http`]: status, the whole body, and each server-sent event's `data:`
/// payload with the moment it was complete.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// The body (de-chunked).
    pub body: Vec<u8>,
    /// `data:` payloads of an event stream, with their arrival.
    pub events: Vec<(Instant, String)>,
}

/// One HTTP/1.1 request on a new connection (`Connection: close`), the response read to its end as it
/// arrives (Content-Length, chunked, or until EOF), each server-sent event timed when complete.
/// Errors: connecting, writing, a malformed response, no byte for `timeout`.
pub fn http(addr: SocketAddr, method: &str, path: &str, body: &str, timeout: Duration) -> Result<HttpResponse> {
    let err = |e: std::io::Error| invalid(format!("HTTP {method} {path} on {addr}: {e}"));
    let mut s = TcpStream::connect(addr).map_err(err)?;
    s.set_read_timeout(Some(timeout)).map_err(err)?;
    s.set_nodelay(true).map_err(err)?;
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).map_err(err)?;
    s.write_all(body.as_bytes()).map_err(err)?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).map_err(err)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| invalid(format!("HTTP {method} {path}: bad status line {line:?}")))?;
    let (mut chunked, mut length) = (false, None);
    loop {
        line.clear();
        if r.read_line(&mut line).map_err(err)? == 0 {
            return Err(invalid(format!("HTTP {method} {path}: the connection closed inside the head")));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            } else if k == "content-length" {
                length = v.parse::<usize>().ok();
            }
        }
    }
    let mut out = HttpResponse { status, body: vec![], events: vec![] };
    let mut pending = 0; // start of the event not yet complete
    let mut feed = |out: &mut HttpResponse, bytes: &[u8]| {
        out.body.extend_from_slice(bytes);
        while let Some(end) = out.body[pending..].windows(2).position(|w| w == b"\n\n") {
            let now = Instant::now();
            let event = String::from_utf8_lossy(&out.body[pending..pending + end]).into_owned();
            for l in event.lines() {
                if let Some(data) = l.strip_prefix("data:") {
                    out.events.push((now, data.trim_start().to_string()));
                }
            }
            pending += end + 2;
        }
    };
    if chunked {
        loop {
            line.clear();
            r.read_line(&mut line).map_err(err)?;
            let size_text = line.trim().split(';').next().unwrap_or("");
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| invalid(format!("HTTP {method} {path}: bad chunk size {line:?}")))?;
            if size == 0 {
                break;
            }
            let mut chunk = vec![0; size + 2];
            r.read_exact(&mut chunk).map_err(err)?;
            feed(&mut out, &chunk[..size]);
        }
    } else if let Some(n) = length {
        let mut b = vec![0; n];
        r.read_exact(&mut b).map_err(err)?;
        feed(&mut out, &b);
    } else {
        let mut buf = [0u8; 8192];
        loop {
            let n = r.read(&mut buf).map_err(err)?;
            if n == 0 {
                break;
            }
            feed(&mut out, &buf[..n]);
        }
    }
    Ok(out)
}

/// The server a load runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// vlmscale's `/v1/chat/completions`.
    Vlmscale,
    /// llama.cpp's `llama-server` `/completion` (prompt as token ids, `ignore_eos`).
    LlamaServer,
}

/// A text-only prompt: the question for vlmscale, the same number of token ids for llama-server.
#[derive(Debug, Clone)]
pub struct TextPrompt {
    /// The user's question (vlmscale wraps it in the chat template).
    pub question: String,
    /// Token ids of the length of vlmscale's templated prompt (llama-server's `/completion`).
    pub ids: Vec<u32>,
}

/// One request's outcome, as the client saw it.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// HTTP status (0: no response).
    pub status: u16,
    /// The error (status ≠ 200, an error event, no final chunk, a transport error).
    pub error: Option<String>,
    /// When the request was sent.
    pub sent: Instant,
    /// Arrival of each event carrying answer text.
    pub token_times: Vec<Instant>,
    /// Generated tokens as the server counts them.
    pub completion_tokens: usize,
    /// Prompt tokens as the server counts them (vlmscale: Q + V).
    pub prompt_tokens: usize,
    /// The server's own TTFT (vlmscale: arrival to first token, queueing included), ms.
    pub server_ttft_ms: Option<f64>,
    /// V served (vlmscale).
    pub visual_tokens: Option<usize>,
}

impl Outcome {
    /// Client-side time to first token, ms.
    pub fn ttft_ms(&self) -> Option<f64> {
        self.token_times.first().map(|t| (*t - self.sent).as_secs_f64() * 1e3)
    }

    /// Decode tokens/s between the first and the last text event.
    pub fn decode_tokens_per_s(&self) -> Option<f64> {
        match (self.token_times.first(), self.token_times.last()) {
            (Some(a), Some(b)) if self.token_times.len() > 1 && b > a => {
                Some((self.token_times.len() - 1) as f64 / (*b - *a).as_secs_f64())
            }
            _ => None,
        }
    }
}

/// Sends `body` (a vlmscale chat request or a llama-server completion request) and reads the answer.
pub fn send(addr: SocketAddr, target: Target, body: &Value, timeout: Duration) -> Outcome {
    let path = match target {
        Target::Vlmscale => "/v1/chat/completions",
        Target::LlamaServer => "/completion",
    };
    let stream = body["stream"].as_bool().unwrap_or(false);
    let sent = Instant::now();
    let mut o = Outcome {
        status: 0,
        error: None,
        sent,
        token_times: vec![],
        completion_tokens: 0,
        prompt_tokens: 0,
        server_ttft_ms: None,
        visual_tokens: None,
    };
    let r = match http(addr, "POST", path, &body.to_string(), timeout) {
        Ok(r) => r,
        Err(e) => {
            o.error = Some(e.to_string());
            return o;
        }
    };
    o.status = r.status;
    if r.status != 200 {
        o.error = Some(format!("HTTP {}: {}", r.status, String::from_utf8_lossy(&r.body).trim()));
        return o;
    }
    let mut finished = false;
    let mut take = |o: &mut Outcome, v: &Value| {
        if let Some(e) = v.get("error") {
            o.error = Some(format!("error: {e}"));
        }
        match target {
            Target::Vlmscale => {
                if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
                    o.completion_tokens = u["completion_tokens"].as_u64().unwrap_or(0) as usize;
                    o.prompt_tokens = u["prompt_tokens"].as_u64().unwrap_or(0) as usize;
                }
                if let Some(x) = v.get("vlmscale") {
                    o.server_ttft_ms = x["ttft_ms"].as_f64();
                    o.visual_tokens = x["visual_tokens"].as_u64().map(|v| v as usize);
                    finished = true;
                }
            }
            Target::LlamaServer => {
                if v["stop"].as_bool() == Some(true) {
                    o.completion_tokens = v["tokens_predicted"].as_u64().unwrap_or(0) as usize;
                    o.prompt_tokens = v["tokens_evaluated"].as_u64().unwrap_or(0) as usize;
                    finished = true;
                }
            }
        }
    };
    if stream {
        for (t, data) in &r.events {
            if data == "[DONE]" {
                continue;
            }
            let Ok(v) = serde_json::from_str::<Value>(data) else {
                o.error = Some(format!("event not JSON: {data}"));
                continue;
            };
            let text = match target {
                Target::Vlmscale => v["choices"][0]["delta"]["content"].as_str(),
                Target::LlamaServer => v["content"].as_str(),
            };
            if text.is_some_and(|t| !t.is_empty()) {
                o.token_times.push(*t);
            }
            take(&mut o, &v);
        }
    } else {
        match serde_json::from_slice::<Value>(&r.body) {
            Ok(v) => take(&mut o, &v),
            Err(e) => o.error = Some(format!("answer not JSON ({e})")),
        }
    }
    if !finished && o.error.is_none() {
        o.error = Some("no final chunk".into());
    }
    o
}

/// The body of a streamed, greedy, text-only request for `target`.
pub fn text_request(target: Target, prompt: &TextPrompt, max_tokens: usize) -> Value {
    match target {
        Target::Vlmscale => json!({
            "model": MODEL_ID, "messages": [{"role": "user", "content": prompt.question}],
            "max_tokens": max_tokens, "temperature": 0, "stream": true,
            "stream_options": {"include_usage": true},
        }),
        Target::LlamaServer => json!({
            "prompt": prompt.ids, "n_predict": max_tokens, "temperature": 0, "stream": true,
            "ignore_eos": true, "cache_prompt": false,
        }),
    }
}

/// (a): one streamed request.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Single {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub tokens: usize,
    /// Client-side TTFT, ms.
    pub ttft_ms: f64,
    /// Decode tokens/s after the first token.
    pub decode_tokens_per_s: f64,
}

/// The best of `repeats` (at least one) runs of `run` by `score` (higher is better): short timed windows
/// on a shared machine vary by ±10 % from run to run, so (a) and (b) report their best, as `bench
/// infer` does. Errors: the first failed run's.
pub fn best_of<T>(repeats: usize, mut run: impl FnMut() -> Result<T>, score: impl Fn(&T) -> f64) -> Result<T> {
    let mut best = run()?;
    for _ in 1..repeats.max(1) {
        let next = run()?;
        if score(&next) > score(&best) {
            best = next;
        }
    }
    Ok(best)
}

/// Sends one streamed text request (after one short warm-up request) and times it.
/// Errors: the request failed or produced fewer than two tokens.
pub fn single(addr: SocketAddr, target: Target, prompt: &TextPrompt, max_tokens: usize) -> Result<Single> {
    let timeout = Duration::from_secs(3600);
    let warm = send(addr, target, &text_request(target, prompt, 2), timeout);
    if let Some(e) = warm.error {
        return Err(invalid(format!("warm-up request: {e}")));
    }
    let o = send(addr, target, &text_request(target, prompt, max_tokens), timeout);
    if let Some(e) = o.error {
        return Err(invalid(format!("single request: {e}")));
    }
    match (o.ttft_ms(), o.decode_tokens_per_s()) {
        (Some(ttft_ms), Some(decode_tokens_per_s)) => {
            Ok(Single { prompt_tokens: o.prompt_tokens, tokens: o.completion_tokens, ttft_ms, decode_tokens_per_s })
        }
        _ => Err(invalid(format!("single request: {} text events, need at least 2", o.token_times.len()))),
    }
}

/// (b): S streamed requests at once.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Concurrent {
    /// S.
    pub streams: usize,
    /// Tokens generated, all streams.
    pub tokens: usize,
    /// Text events per second over the window in which every stream is decoding (from the last
    /// stream's first token to the first stream's last token); the overall figure if that window is empty.
    pub steady_tokens_per_s: f64,
    /// Tokens after each stream's first, over the time from the earliest first token to the last token.
    pub overall_tokens_per_s: f64,
    /// Mean client-side TTFT, ms.
    pub mean_ttft_ms: f64,
    /// Longest client-side TTFT, ms.
    pub max_ttft_ms: f64,
}

/// Sends `streams` identical streamed text requests at once and measures the aggregate decode rate.
/// Errors: a request failed or produced fewer than two tokens.
pub fn concurrent(
    addr: SocketAddr,
    target: Target,
    prompt: &TextPrompt,
    max_tokens: usize,
    streams: usize,
) -> Result<Concurrent> {
    let streams = streams.max(1);
    let barrier = Barrier::new(streams);
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..streams)
            .map(|_| {
                let barrier = &barrier;
                s.spawn(move || {
                    let body = text_request(target, prompt, max_tokens);
                    barrier.wait();
                    send(addr, target, &body, Duration::from_secs(3600))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("client thread")).collect()
    });
    for o in &outcomes {
        if let Some(e) = &o.error {
            return Err(invalid(format!("concurrent request: {e}")));
        }
        if o.token_times.len() < 2 {
            return Err(invalid(format!("concurrent request: {} text events, need at least 2", o.token_times.len())));
        }
    }
    let firsts: Vec<Instant> = outcomes.iter().map(|o| o.token_times[0]).collect();
    let lasts: Vec<Instant> = outcomes.iter().map(|o| *o.token_times.last().unwrap_or(&o.sent)).collect();
    let (earliest, latest_first) = (*firsts.iter().min().unwrap_or(&Instant::now()), *firsts.iter().max().unwrap());
    let (earliest_last, last) = (*lasts.iter().min().unwrap(), *lasts.iter().max().unwrap());
    let after_first: usize = outcomes.iter().map(|o| o.token_times.len() - 1).sum();
    let overall = after_first as f64 / (last - earliest).as_secs_f64().max(1e-9);
    let steady = if earliest_last > latest_first {
        let n = outcomes
            .iter()
            .flat_map(|o| o.token_times.iter())
            .filter(|t| **t > latest_first && **t <= earliest_last)
            .count();
        if n >= streams {
            n as f64 / (earliest_last - latest_first).as_secs_f64()
        } else {
            overall
        }
    } else {
        overall
    };
    let ttfts: Vec<f64> = outcomes.iter().filter_map(Outcome::ttft_ms).collect();
    Ok(Concurrent {
        streams,
        tokens: outcomes.iter().map(|o| o.completion_tokens).sum(),
        steady_tokens_per_s: steady,
        overall_tokens_per_s: overall,
        mean_ttft_ms: ttfts.iter().sum::<f64>() / ttfts.len().max(1) as f64,
        max_ttft_ms: ttfts.iter().cloned().fold(0.0, f64::max),
    })
}

/// One kind of request in the mixed load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestKind {
    /// Short label (`text`, `native`, `avgpool V=144`, …).
    pub label: String,
    /// With an image.
    pub image: bool,
    /// `visual_tokens` + `token_reduction`, if any.
    pub reduction: Option<(ReductionMethod, usize)>,
}

/// The request kinds of the mixed load for a G × G grid and an LLM of `llm_layers` layers: text only;
/// the image at its native V = G²; `avgpool` to (G/2)² (G even); `visionzip` to G²/9; `cls-topk` to
/// G²/36; `fastv` to G²/9 at layer 2 (LLMs of 3 layers or more). Each V at least 1.
pub fn request_kinds(grid: usize, llm_layers: usize) -> Vec<RequestKind> {
    let n = grid * grid;
    let mut kinds = vec![
        RequestKind { label: "text".into(), image: false, reduction: None },
        RequestKind { label: format!("native V={n}"), image: true, reduction: None },
    ];
    let mut add = |m: ReductionMethod, v: usize| {
        kinds.push(RequestKind { label: format!("{} V={v}", m.name()), image: true, reduction: Some((m, v)) })
    };
    if grid.is_multiple_of(2) {
        add(ReductionMethod::AvgPool, n / 4);
    }
    add(ReductionMethod::VisionZip, (n / 9).max(1));
    add(ReductionMethod::ClsTopK, (n / 36).max(1));
    if llm_layers > models::reduction::DEFAULT_FASTV_LAYER {
        add(ReductionMethod::FastV, (n / 9).max(1));
    }
    kinds
}

/// (c): the mixed load.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MixedLoad {
    /// Clients.
    pub clients: usize,
    /// Requests per client.
    pub requests_per_client: usize,
    /// Requests that failed.
    pub failed: usize,
    /// The first few failures.
    pub failures: Vec<String>,
    /// p50 of the server-reported TTFT (arrival to first token, queueing included), ms.
    pub ttft_p50_ms: f64,
    /// p99 of the same, ms.
    pub ttft_p99_ms: f64,
    /// Generated tokens over the wall time of the load.
    pub tokens_per_s: f64,
    /// Generated tokens.
    pub tokens: usize,
    /// Wall time, s.
    pub seconds: f64,
    /// Requests per kind label.
    pub mix: Vec<(String, usize)>,
}

/// C clients × N requests each, one after the other per client: request k (client c, number i,
/// k = c·N + i) is of kind `kinds[k % kinds.len()]`, streamed when `(k / kinds.len() + k)` is even
/// (so every kind is sent both ways), sampled at temperature 0.7 with seed k, `max_tokens` tokens;
/// images are `image_url`.
pub fn mixed_load(
    addr: SocketAddr,
    kinds: &[RequestKind],
    image_url: &str,
    question: &str,
    clients: usize,
    per_client: usize,
    max_tokens: usize,
) -> MixedLoad {
    let t0 = Instant::now();
    let results: Vec<(String, Outcome)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                s.spawn(move || {
                    (0..per_client)
                        .map(|i| {
                            let k = c * per_client + i;
                            let kind = &kinds[k % kinds.len()];
                            let stream = (k / kinds.len() + k).is_multiple_of(2);
                            let content = if kind.image {
                                json!([{"type": "text", "text": question},
                                       {"type": "image_url", "image_url": {"url": image_url}}])
                            } else {
                                json!(question)
                            };
                            let mut body = json!({
                                "model": MODEL_ID, "messages": [{"role": "user", "content": content}],
                                "max_tokens": max_tokens, "temperature": 0.7, "seed": k, "stream": stream,
                            });
                            if stream {
                                body["stream_options"] = json!({"include_usage": true});
                            }
                            if let Some((m, v)) = kind.reduction {
                                body["token_reduction"] = json!(m.name());
                                body["visual_tokens"] = json!(v);
                            }
                            (kind.label.clone(), send(addr, Target::Vlmscale, &body, Duration::from_secs(3600)))
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("client thread")).collect()
    });
    let seconds = t0.elapsed().as_secs_f64();
    let mut ttft: Vec<f64> = vec![];
    let (mut failed, mut failures, mut tokens) = (0, vec![], 0);
    let mut mix: Vec<(String, usize)> = kinds.iter().map(|k| (k.label.clone(), 0)).collect();
    for (label, o) in &results {
        if let Some(m) = mix.iter_mut().find(|(l, _)| l == label) {
            m.1 += 1;
        }
        match (&o.error, o.server_ttft_ms) {
            (None, Some(t)) => {
                ttft.push(t);
                tokens += o.completion_tokens;
            }
            (e, _) => {
                failed += 1;
                if failures.len() < 5 {
                    failures.push(format!("{label}: {}", e.clone().unwrap_or_else(|| "no TTFT reported".into())));
                }
            }
        }
    }
    ttft.sort_by(f64::total_cmp);
    let pct = |p: f64| if ttft.is_empty() { f64::NAN } else { ttft[((ttft.len() - 1) as f64 * p).round() as usize] };
    MixedLoad {
        clients,
        requests_per_client: per_client,
        failed,
        failures,
        ttft_p50_ms: pct(0.5),
        ttft_p99_ms: pct(0.99),
        tokens_per_s: tokens as f64 / seconds,
        tokens,
        seconds,
        mix,
    }
}

/// One streamed request with an image at the native V (vlmscale only): client-side TTFT, ms, and the
/// V served. Errors: the request failed or produced no token.
pub fn image_ttft(addr: SocketAddr, image_url: &str, question: &str, max_tokens: usize) -> Result<(f64, usize)> {
    let body = json!({
        "model": MODEL_ID, "max_tokens": max_tokens, "temperature": 0, "stream": true,
        "stream_options": {"include_usage": true},
        "messages": [{"role": "user", "content": [{"type": "text", "text": question},
                                                  {"type": "image_url", "image_url": {"url": image_url}}]}],
    });
    let o = send(addr, Target::Vlmscale, &body, Duration::from_secs(3600));
    if let Some(e) = o.error {
        return Err(invalid(format!("image request: {e}")));
    }
    let t = o.ttft_ms().ok_or_else(|| invalid("image request: no token"))?;
    Ok((t, o.visual_tokens.unwrap_or(0)))
}

/// The value of the Prometheus series `series` (exact text before the value) at `/metrics`.
pub fn metric(addr: SocketAddr, series: &str) -> Option<f64> {
    let r = http(addr, "GET", "/metrics", "", Duration::from_secs(30)).ok()?;
    String::from_utf8_lossy(&r.body)
        .lines()
        .find_map(|l| l.strip_prefix(series).and_then(|r| r.strip_prefix(' ')).and_then(|v| v.trim().parse().ok()))
}

/// llama.cpp's `llama-server`, started by [`LlamaServer::start`] and killed when dropped.
pub struct LlamaServer {
    /// Where it listens.
    pub addr: SocketAddr,
    child: std::process::Child,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
}

impl LlamaServer {
    /// Starts `bin` on `gguf` on 127.0.0.1 with a free port: `-t threads -tb threads --parallel
    /// parallel -c ctx`, and waits (up to 10 minutes) until `/health` answers 200. Errors: the
    /// binary does not start, exits, or is not ready in time (naming its log).
    pub fn start(bin: &Path, gguf: &Path, threads: usize, parallel: usize, ctx: usize, log: &Path) -> Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| invalid(format!("finding a free port: {e}")))?
            .port();
        let file = std::fs::File::create(log).map_err(|source| Error::Io { path: log.to_path_buf(), source })?;
        let file2 = file.try_clone().map_err(|source| Error::Io { path: log.to_path_buf(), source })?;
        let mut child = std::process::Command::new(bin)
            .arg("-m")
            .arg(gguf)
            .args(["-t", &threads.to_string(), "-tb", &threads.to_string()])
            .args(["--parallel", &parallel.to_string(), "-c", &ctx.to_string()])
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "-ngl", "0"])
            .stdout(file)
            .stderr(file2)
            .spawn()
            .map_err(|e| invalid(format!("starting {}: {e}", bin.display())))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let t0 = Instant::now();
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(invalid(format!(
                    "llama-server exited ({status}) before it was ready; log: {}",
                    log.display()
                )));
            }
            if http(addr, "GET", "/health", "", Duration::from_secs(5)).is_ok_and(|r| r.status == 200) {
                return Ok(Self { addr, child, log: log.to_path_buf() });
            }
            if t0.elapsed() > Duration::from_secs(600) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(invalid(format!("llama-server not ready after 10 minutes; log: {}", log.display())));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `llama-server` in the llama.cpp peer's cache: `$XDG_CACHE_HOME/vlmscale/llama.cpp-*/build*/bin/`
/// (else `~/.cache/...`), the newest version first; `None` if there is none.
pub fn find_llama_server() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?
        .join("vlmscale");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(&base)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("llama.cpp-")))
        .collect();
    versions.sort();
    versions.reverse();
    versions.into_iter().find_map(|v| {
        let mut builds: Vec<PathBuf> = std::fs::read_dir(&v)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("build")))
            .collect();
        builds.sort();
        builds.into_iter().map(|b| b.join("bin").join("llama-server")).find(|p| p.is_file())
    })
}

/// Token ids of a llama-server prompt as long as vlmscale's: `len` seeded ids among the ordinary
/// word tokens (below the ChatML ids, above the bytes).
pub fn prompt_ids(len: usize, vocab: usize, seed: u64) -> Vec<u32> {
    use rand::Rng;
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(seed);
    let hi = special_base(vocab).max(257);
    (0..len).map(|_| rng.random_range(256..hi) as u32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_level_table_is_gpt2s() {
        let t = byte_level_chars();
        assert_eq!(t.len(), 256);
        assert_eq!(t[b'a' as usize], 'a');
        assert_eq!(t[b' ' as usize], 'Ġ');
        assert_eq!(t[0], 'Ā');
        let set: std::collections::HashSet<char> = t.iter().copied().collect();
        assert_eq!(set.len(), 256);
    }

    #[test]
    fn request_kinds_fit_the_grid() {
        let k = request_kinds(24, 24);
        let labels: Vec<&str> = k.iter().map(|k| k.label.as_str()).collect();
        assert_eq!(labels, ["text", "native V=576", "avgpool V=144", "visionzip V=64", "cls-topk V=16", "fastv V=64"]);
        assert_eq!(request_kinds(3, 2).len(), 4); // odd grid: no avgpool; 2 layers: no FastV
    }

    #[test]
    fn config_checks_the_image_size() {
        assert!(llava_config_json("tiny", 100).is_err());
        let c = llava_config_json("0.5b", 224).unwrap();
        assert_eq!(c["vision_config"]["image_size"], 224);
        assert_eq!(c["model_type"], "llava_qwen");
    }
}

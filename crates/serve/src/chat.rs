//! `POST /v1/chat/completions`: parse and validate the request (everything that can be checked is
//! checked before the job is queued, so a bad request costs no model time), queue it, and answer
//! with one JSON object or a stream of server-sent events ending in `data: [DONE]`.
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::TrySendError;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::api::{
    AssistantMessage, BudgetChoice, ChatRequest, ChatResponse, Choice, Content, Dialogue, Message, Part, ServedInfo,
    Stop, Usage,
};
use crate::budget::{Budget, Candidate};
use crate::error::ApiError;
use crate::reduction::{self, VisualPlan};
use crate::worker::{Event, Finished, Job};
use crate::AppState;

/// Stop sequences per request, at most (OpenAI's limit).
const MAX_STOP: usize = 4;

/// Counts a request as in flight (graceful shutdown waits for these) and cancels its job when
/// dropped — when the response is complete, or when the client went away and the response future or
/// body stream was dropped.
pub(crate) struct RequestGuard {
    state: Arc<AppState>,
    cancel: Arc<AtomicBool>,
}

impl RequestGuard {
    pub(crate) fn new(state: &Arc<AppState>) -> Self {
        state.in_flight.fetch_add(1, Ordering::SeqCst);
        Self { state: state.clone(), cancel: Arc::new(AtomicBool::new(false)) }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        self.state.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The validated request, ready to queue.
struct Prepared {
    model: usize,
    dialogue: Dialogue,
    image: Option<(String, String)>,
    plan: VisualPlan,
    budget: Option<BudgetChoice>,
    max_new_tokens: usize,
    temperature: f64,
    top_p: f64,
    seed: u64,
    stop: Vec<String>,
    stream: bool,
    include_usage: bool,
}

/// The handler.
pub(crate) async fn chat_completions(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let arrived = Instant::now();
    let guard = RequestGuard::new(&state);
    match handle(&state, body, arrived, guard).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(
    state: &Arc<AppState>,
    body: Result<Bytes, BytesRejection>,
    arrived: Instant,
    guard: RequestGuard,
) -> Result<Response, ApiError> {
    let body = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            body_too_large(state.max_body_bytes)
        } else {
            ApiError::invalid("invalid_body", format!("could not read the request body: {r}"))
        }
    })?;
    let req = parse(&body)?;
    let p = prepare(state, &req)?;
    // Decoding is CPU work: off the async threads, and at most `DECODE_SLOTS` at once so that
    // concurrent large images cannot add up to more memory than a few decoded images.
    let image = match p.image.clone() {
        Some((url, param)) => {
            let _slot = state.decode_slots.acquire().await.map_err(|_| ApiError::shutting_down())?;
            let media = state.media.clone();
            let img = tokio::task::spawn_blocking(move || crate::media::load_image(&url, &media, &param))
                .await
                .map_err(|e| ApiError::internal(format!("image decoding failed: {e}")))??;
            Some(img)
        }
        None => None,
    };
    let info = &state.models[p.model];
    let prompt =
        info.prompt(&p.dialogue, image.is_some()).map_err(|e| ApiError::from_engine(&e).with_param("messages"))?;
    let v = if image.is_some() { p.plan.entering_tokens(&state.models[p.model].native) } else { 0 };
    let input_len = prompt.text_len() + v;
    if input_len > info.context {
        return Err(ApiError::invalid_param(
            "context_length_exceeded",
            "messages",
            format!(
                "the prompt needs Q + V = {} + {v} = {input_len} positions; model `{}` has a context of {}",
                prompt.text_len(),
                info.id,
                info.context
            ),
        ));
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let job = Job {
        model: p.model,
        question: p.dialogue.question.clone(),
        prompt,
        image,
        plan: p.plan.clone(),
        max_new_tokens: p.max_new_tokens,
        temperature: p.temperature,
        top_p: p.top_p,
        seed: p.seed,
        stop: p.stop.clone(),
        cancel: guard.cancel.clone(),
        arrived,
        queued: Instant::now(),
        deadline: arrived + state.timeout,
        timeout_s: state.timeout.as_secs_f64(),
        events: tx,
    };
    enqueue(state, job)?;
    let ctx = ResponseCtx {
        id: format!("chatcmpl-{:x}{:06x}", state.started, state.next_id.fetch_add(1, Ordering::Relaxed)),
        created: unix_now(),
        model: info.id.clone(),
        plan: p.plan.clone(),
        budget: p.budget.clone(),
        reduction_label: if v == 0 { "none".into() } else { p.plan.label(&info.native) },
        llm_params: info.llm_params,
        include_usage: p.include_usage,
    };
    if p.stream {
        stream_response(state.clone(), rx, ctx, guard).await
    } else {
        whole_response(rx, ctx, guard).await
    }
}

fn body_too_large(limit: usize) -> ApiError {
    ApiError::too_large(
        "body_too_large",
        format!("the request body exceeds the server's limit of {limit} bytes (--max-body-bytes)"),
    )
}

/// Rejects bodies whose declared length is over the limit before any of it is read (so a client
/// sending `Expect: 100-continue` gets the 413 without uploading).
pub(crate) fn check_content_length(headers: &axum::http::HeaderMap, limit: usize) -> Result<(), ApiError> {
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|s| s.parse::<u64>().ok());
    match declared {
        Some(n) if n > limit as u64 => Err(body_too_large(limit)),
        _ => Ok(()),
    }
}

fn parse(body: &[u8]) -> Result<ChatRequest, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(body);
    let req: ChatRequest = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                ApiError::invalid("invalid_json", format!("the body is not valid JSON: {inner}"))
            }
            _ => {
                let err = ApiError::invalid("invalid_value", format!("invalid request: {inner}"));
                if path == "." {
                    err
                } else {
                    err.with_param(path)
                }
            }
        }
    })?;
    de.end().map_err(|e| ApiError::invalid("invalid_json", format!("the body is not valid JSON: {e}")))?;
    Ok(req)
}

fn prepare(state: &AppState, req: &ChatRequest) -> Result<Prepared, ApiError> {
    let (dialogue, image) = conversation(req)?;
    let max_new_tokens = match req.max_completion_tokens.or(req.max_tokens) {
        Some(n) if n < 1 => {
            let param = if req.max_completion_tokens.is_some() { "max_completion_tokens" } else { "max_tokens" };
            return Err(ApiError::invalid_param(
                "invalid_value",
                param,
                format!("{param} must be at least 1, got {n}"),
            ));
        }
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => state.default_max_tokens,
    };
    let temperature = req.temperature.unwrap_or(1.0);
    if !(temperature.is_finite() && (0.0..=2.0).contains(&temperature)) {
        return Err(ApiError::invalid_param(
            "invalid_value",
            "temperature",
            format!("temperature must be between 0 and 2, got {temperature}"),
        ));
    }
    let top_p = req.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid_param("invalid_value", "top_p", format!("top_p must be in (0, 1], got {top_p}")));
    }
    if let Some(n) = req.n.filter(|&n| n != 1) {
        return Err(ApiError::invalid_param("invalid_value", "n", format!("only n = 1 is supported, got {n}")));
    }
    let seed = req
        .seed
        .map(|s| s as u64)
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0));
    let stop = match &req.stop {
        None => vec![],
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(v)) => v.clone(),
    };
    if stop.len() > MAX_STOP || stop.iter().any(|s| s.is_empty()) {
        return Err(ApiError::invalid_param(
            "invalid_value",
            "stop",
            format!("stop takes up to {MAX_STOP} non-empty strings"),
        ));
    }

    // The model, and V (or the budget's choice of both).
    let named = match req.model.as_deref() {
        None | Some("auto") if req.budget.is_some() => None,
        None if state.models.len() == 1 => Some(0),
        None => {
            return Err(ApiError::invalid_param(
                "missing_model",
                "model",
                format!("`model` is required: one of {}", model_ids(state)),
            ))
        }
        Some(id) => Some(state.models.iter().position(|m| m.id == id).ok_or_else(|| {
            ApiError::not_found(
                "model_not_found",
                format!("model `{id}` is not served here; served: {}", model_ids(state)),
            )
            .with_param("model")
        })?),
    };
    let has_image = image.is_some();
    if !has_image && (req.visual_tokens.is_some() || req.budget.is_some()) {
        let param = if req.budget.is_some() { "budget" } else { "visual_tokens" };
        return Err(ApiError::invalid_param(
            "no_image",
            param,
            format!("`{param}` applies to an image, and the request has none"),
        ));
    }
    let (model, plan, budget) = match &req.budget {
        Some(b) => {
            if req.visual_tokens.is_some() {
                return Err(ApiError::invalid_param(
                    "conflicting_parameters",
                    "visual_tokens",
                    "give either `visual_tokens` or `budget`, not both",
                ));
            }
            let budget = Budget::parse(b)?;
            let method = match req.token_reduction.as_deref() {
                Some(m) => reduction::parse_method(m)?,
                None => None,
            };
            let Some(planner) = &state.planner else {
                return Err(ApiError::invalid_param(
                    "budget_unavailable",
                    "budget",
                    "this server has no scaling law to decide budgets with",
                ));
            };
            let scope: Vec<usize> = match named {
                Some(i) => vec![i],
                None => (0..state.models.len()).collect(),
            };
            let mut cands = Vec::with_capacity(scope.len());
            for &i in &scope {
                let m = &state.models[i];
                let q =
                    m.prompt(&dialogue, true).map_err(|e| ApiError::from_engine(&e).with_param("messages"))?.text_len();
                cands.push(Candidate { llm_params: m.llm_params, text_tokens: q, native: &m.native });
            }
            let pick = planner.pick(budget, &cands, method)?;
            let model = scope[pick.model];
            let mut plan = pick.plan;
            if plan.method.is_some() {
                plan.fastv_layer = reduction::fastv_layer(&state.models[model].native, req.fastv_layer)?;
            }
            let choice = BudgetChoice {
                kind: budget.kind(),
                budget: budget.value(),
                cost: pick.cost,
                predicted_error: pick.predicted_error,
                model: state.models[model].id.clone(),
                visual_tokens: plan.visual_tokens,
                candidates: pick.weighed,
            };
            (model, plan, Some(choice))
        }
        None => {
            let model = named.expect("a model is named unless a budget is given");
            let plan = reduction::plan(
                &state.models[model].native,
                req.visual_tokens,
                req.token_reduction.as_deref(),
                req.fastv_layer,
            )?;
            (model, plan, None)
        }
    };
    Ok(Prepared {
        model,
        dialogue,
        image,
        plan,
        budget,
        max_new_tokens,
        temperature,
        top_p,
        seed,
        stop,
        stream: req.stream.unwrap_or(false),
        include_usage: req.stream_options.as_ref().and_then(|o| o.include_usage).unwrap_or(false),
    })
}

fn model_ids(state: &AppState) -> String {
    state.models.iter().map(|m| format!("`{}`", m.id)).collect::<Vec<_>>().join(", ")
}

/// The text of message `i`'s content and the image URL (with its param path) it carries, if any.
fn message_parts(m: &Message, i: usize) -> Result<(String, Option<(String, String)>), ApiError> {
    let content = m.content.as_ref().ok_or_else(|| {
        ApiError::invalid_param("invalid_value", format!("messages[{i}].content"), "the message has no content")
    })?;
    let mut texts = vec![];
    let mut image = None;
    match content {
        Content::Text(t) => texts.push(t.as_str()),
        Content::Parts(parts) => {
            for (j, p) in parts.iter().enumerate() {
                match p {
                    Part::Text { text } => texts.push(text.as_str()),
                    Part::ImageUrl { image_url } => {
                        if image.is_some() {
                            return Err(ApiError::invalid_param(
                                "too_many_images",
                                format!("messages[{i}].content[{j}]"),
                                "one image per request: the LLaVA-style models served here take one image",
                            ));
                        }
                        image = Some((image_url.url.clone(), format!("messages[{i}].content[{j}].image_url.url")));
                    }
                }
            }
        }
    }
    let text = texts.join("\n");
    if text.contains(engine::text::IMAGE_PLACEHOLDER) {
        return Err(ApiError::invalid_param(
            "invalid_value",
            format!("messages[{i}].content"),
            format!(
                "the text must not contain `{}`: send the image as an image_url part",
                engine::text::IMAGE_PLACEHOLDER
            ),
        ));
    }
    Ok((text, image))
}

/// The dialogue and the image URL (with its param path) of a conversation: optional `system` /
/// `developer` messages first, then `user` and `assistant` messages alternating, starting and ending
/// with `user`; at most one image in all, in a user message (the template puts it in the first user
/// turn, as LLaVA's `get_prompt` does).
fn conversation(req: &ChatRequest) -> Result<(Dialogue, Option<(String, String)>), ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::invalid_param("invalid_value", "messages", "messages must not be empty"));
    }
    for (i, m) in req.messages.iter().enumerate() {
        if !matches!(m.role.as_str(), "system" | "developer" | "user" | "assistant" | "tool") {
            return Err(ApiError::invalid_param(
                "invalid_value",
                format!("messages[{i}].role"),
                format!("unknown role `{}`", m.role),
            ));
        }
    }
    let unsupported = |i: usize, why: &str| {
        ApiError::invalid_param(
            "unsupported_conversation",
            format!("messages[{i}]"),
            format!(
                "{why}: this server takes optional system messages, then user and assistant messages \
                 alternating, starting and ending with a user message"
            ),
        )
    };
    let first_chat = req.messages.iter().position(|m| !matches!(m.role.as_str(), "system" | "developer"));
    let Some(first_chat) = first_chat else { return Err(unsupported(0, "no user message")) };
    let mut system = vec![];
    for (i, m) in req.messages[..first_chat].iter().enumerate() {
        let (text, image) = message_parts(m, i)?;
        if image.is_some() {
            return Err(unsupported(i, "an image in a system message"));
        }
        system.push(text);
    }
    let mut image = None;
    let mut texts = vec![];
    for (i, m) in req.messages.iter().enumerate().skip(first_chat) {
        let want = if (i - first_chat) % 2 == 0 { "user" } else { "assistant" };
        if m.role != want {
            return Err(unsupported(i, &format!("a `{}` message where a `{want}` message belongs", m.role)));
        }
        let (text, img) = message_parts(m, i)?;
        if let Some(img) = img {
            if m.role != "user" {
                return Err(unsupported(i, "an image in an assistant message"));
            }
            if image.is_some() {
                return Err(ApiError::invalid_param(
                    "too_many_images",
                    format!("messages[{i}]"),
                    "one image per request: the LLaVA-style models served here take one image",
                ));
            }
            image = Some(img);
        }
        texts.push(text);
    }
    let last = req.messages.len() - 1;
    if req.messages[last].role != "user" {
        return Err(unsupported(last, "the conversation does not end with a user message"));
    }
    let question = texts.pop().unwrap_or_default();
    if question.trim().is_empty() {
        return Err(ApiError::invalid_param(
            "empty_prompt",
            format!("messages[{last}].content"),
            "the user message has no text",
        ));
    }
    let history = texts.chunks_exact(2).map(|p| (p[0].clone(), p[1].clone())).collect();
    let system = (!system.is_empty()).then(|| system.join("\n"));
    Ok((Dialogue { system, history, question }, image))
}

fn enqueue(state: &AppState, job: Job) -> Result<(), ApiError> {
    let queue = state.queue.lock().unwrap_or_else(|p| p.into_inner());
    let Some(q) = queue.as_ref() else { return Err(ApiError::shutting_down()) };
    state.metrics.enqueued();
    match q.try_send(job) {
        Ok(()) => Ok(()),
        Err(TrySendError::Full(_)) => {
            state.metrics.dequeued();
            Err(ApiError::queue_full(state.queue_capacity))
        }
        Err(TrySendError::Disconnected(_)) => {
            state.metrics.dequeued();
            Err(ApiError::internal("the generation worker has stopped"))
        }
    }
}

/// What every response of one request repeats.
struct ResponseCtx {
    id: String,
    created: u64,
    model: String,
    plan: VisualPlan,
    budget: Option<BudgetChoice>,
    reduction_label: String,
    llm_params: usize,
    include_usage: bool,
}

impl ResponseCtx {
    fn served(&self, f: &Finished) -> ServedInfo {
        ServedInfo {
            model: self.model.clone(),
            visual_tokens: f.visual_tokens,
            text_tokens: f.text_tokens,
            token_reduction: self.reduction_label.clone(),
            requested_visual_tokens: self.plan.requested,
            note: self.plan.note.clone(),
            budget: self.budget.clone(),
            llm_params: self.llm_params,
            prompt_flops: scaling::cost::paper_flops(
                self.llm_params as f64,
                f.text_tokens as f64,
                f.visual_tokens as f64,
            ),
            ttft_ms: f.ttft_ms,
            queue_ms: f.queue_ms,
            decode_tokens_per_s: f.decode_tokens_per_s,
        }
    }

    fn usage(f: &Finished) -> Usage {
        let prompt_tokens = f.text_tokens + f.visual_tokens;
        Usage {
            prompt_tokens,
            completion_tokens: f.completion_tokens,
            total_tokens: prompt_tokens + f.completion_tokens,
        }
    }

    fn chunk(&self, delta: serde_json::Value, finish: Option<&str>) -> String {
        let c = json!({
            "id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        });
        format!("data: {c}\n\n")
    }
}

async fn whole_response(
    mut rx: UnboundedReceiver<Event>,
    ctx: ResponseCtx,
    guard: RequestGuard,
) -> Result<Response, ApiError> {
    let _guard = guard;
    loop {
        match rx.recv().await {
            Some(Event::Text(_)) => {}
            Some(Event::Done(f)) => {
                let resp = ChatResponse {
                    id: ctx.id.clone(),
                    object: "chat.completion",
                    created: ctx.created,
                    model: ctx.model.clone(),
                    choices: vec![Choice {
                        index: 0,
                        message: AssistantMessage { role: "assistant", content: f.text.clone() },
                        finish_reason: f.finish_reason,
                    }],
                    usage: ResponseCtx::usage(&f),
                    vlmscale: ctx.served(&f),
                };
                return Ok(axum::Json(resp).into_response());
            }
            Some(Event::Error(e)) => return Err(e),
            None => return Err(ApiError::internal("the generation worker dropped the request")),
        }
    }
}

/// SSE: waits for the first event so that a failure before any text is still a JSON error with its
/// status; then streams `chat.completion.chunk`s, a last chunk with `finish_reason` and vlmscale's
/// report (and, with `stream_options.include_usage`, a chunk with `usage`), and `data: [DONE]`.
async fn stream_response(
    state: Arc<AppState>,
    mut rx: UnboundedReceiver<Event>,
    ctx: ResponseCtx,
    guard: RequestGuard,
) -> Result<Response, ApiError> {
    let first = match rx.recv().await {
        Some(Event::Error(e)) => return Err(e),
        Some(ev) => ev,
        None => return Err(ApiError::internal("the generation worker dropped the request")),
    };
    struct St {
        rx: UnboundedReceiver<Event>,
        first: Option<Event>,
        started: bool,
        done: bool,
        ctx: ResponseCtx,
        state: Arc<AppState>,
        _guard: RequestGuard,
    }
    let st = St { rx, first: Some(first), started: false, done: false, ctx, state, _guard: guard };
    let body = futures_util::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        let mut out = String::new();
        if !st.started {
            st.started = true;
            out.push_str(&st.ctx.chunk(json!({"role": "assistant", "content": ""}), None));
        }
        let ev = match st.first.take() {
            Some(e) => Some(e),
            None => st.rx.recv().await,
        };
        match ev {
            Some(Event::Text(t)) => out.push_str(&st.ctx.chunk(json!({ "content": t }), None)),
            Some(Event::Done(f)) => {
                let last = json!({
                    "id": st.ctx.id, "object": "chat.completion.chunk", "created": st.ctx.created,
                    "model": st.ctx.model,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": f.finish_reason}],
                    "vlmscale": st.ctx.served(&f),
                });
                out.push_str(&format!("data: {last}\n\n"));
                if st.ctx.include_usage {
                    let u = json!({
                        "id": st.ctx.id, "object": "chat.completion.chunk", "created": st.ctx.created,
                        "model": st.ctx.model, "choices": [], "usage": ResponseCtx::usage(&f),
                    });
                    out.push_str(&format!("data: {u}\n\n"));
                }
                out.push_str("data: [DONE]\n\n");
                st.done = true;
            }
            Some(Event::Error(e)) => {
                st.state.metrics.error(e.code);
                out.push_str(&format!("data: {}\n\ndata: [DONE]\n\n", e.body()));
                st.done = true;
            }
            None => {
                let e = ApiError::internal("the generation worker dropped the request");
                st.state.metrics.error(e.code);
                out.push_str(&format!("data: {}\n\ndata: [DONE]\n\n", e.body()));
                st.done = true;
            }
        }
        Some((Ok::<_, Infallible>(Bytes::from(out)), st))
    });
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::internal(e.to_string()))
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

//! The wire format: OpenAI's chat-completions request and response objects (the subset a VLM server
//! uses; unknown fields are ignored as OpenAI-compatible servers do) plus vlmscale's per-request
//! extension fields `visual_tokens`, `token_reduction` and `budget`, which other servers ignore.
use serde::{Deserialize, Serialize};

/// `POST /v1/chat/completions` body.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// Model id (`GET /v1/models`); optional when the server serves one model.
    #[serde(default)]
    pub model: Option<String>,
    /// The conversation.
    pub messages: Vec<Message>,
    /// Maximum new tokens (deprecated OpenAI name).
    #[serde(default)]
    pub max_tokens: Option<i64>,
    /// Maximum new tokens (current OpenAI name; wins over `max_tokens`).
    #[serde(default)]
    pub max_completion_tokens: Option<i64>,
    /// Softmax temperature in [0, 2]; 0 = greedy. Default 1 (OpenAI's).
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus threshold in (0, 1].
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Sampler seed.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Stop sequences (a string or up to 4 strings).
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Stream server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// `{"include_usage": true}` adds a final chunk with `usage`.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Number of choices; only 1.
    #[serde(default)]
    pub n: Option<i64>,
    /// vlmscale extension: V, the visual tokens the image should cost.
    #[serde(default)]
    pub visual_tokens: Option<i64>,
    /// vlmscale extension: how to reach V (`avgpool`, …; see [`crate::reduction`]).
    #[serde(default)]
    pub token_reduction: Option<String>,
    /// vlmscale extension: FastV's layer K (`token_reduction: "fastv"`; default 2).
    #[serde(default)]
    pub fastv_layer: Option<i64>,
    /// vlmscale extension: a budget for which the server picks (model, V).
    #[serde(default)]
    pub budget: Option<BudgetRequest>,
}

/// `stop`: one string or several.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop sequence.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` and no choices.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// `budget`: exactly one of its fields.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetRequest {
    /// Time to first token, milliseconds (needs the server's --latency-profile).
    #[serde(default)]
    pub ttft_ms: Option<f64>,
    /// FLOPs of the query by the paper's 2·N·(Q + V).
    #[serde(default)]
    pub flops: Option<f64>,
}

/// One message.
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    /// `system`, `developer`, `user`, `assistant`, `tool`.
    pub role: String,
    /// Text, or a list of parts.
    #[serde(default)]
    pub content: Option<Content>,
}

/// A message's content.
#[derive(Debug, Clone)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Text and image parts.
    Parts(Vec<Part>),
}

/// By hand rather than `#[serde(untagged)]`, so that an error inside a part names the part
/// (`messages[0].content[1]`) instead of "did not match any variant".
impl<'de> Deserialize<'de> for Content {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Content;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or an array of content parts")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Content, E> {
                Ok(Content::Text(s.to_string()))
            }
            fn visit_string<E: serde::de::Error>(self, s: String) -> Result<Content, E> {
                Ok(Content::Text(s))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Content, A::Error> {
                let mut parts = vec![];
                while let Some(p) = seq.next_element::<Part>()? {
                    parts.push(p);
                }
                Ok(Content::Parts(parts))
            }
        }
        d.deserialize_any(V)
    }
}

/// A content part.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Part {
    /// `{"type": "text", "text": …}`.
    Text {
        /// The text.
        text: String,
    },
    /// `{"type": "image_url", "image_url": {"url": …}}`.
    ImageUrl {
        /// The image reference.
        image_url: ImageUrl,
    },
}

/// `image_url`.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageUrl {
    /// `data:image/png;base64,…` (or `file://…` under --allowed-local-media-path).
    pub url: String,
    /// OpenAI's `detail` (`auto`, `low`, `high`): accepted and ignored — the image always becomes the
    /// tower's fixed grid; V is chosen with `visual_tokens` or `budget`.
    #[serde(default)]
    pub detail: Option<String>,
}

/// `usage`.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Usage {
    /// LLM input length Q + V: the visual tokens actually used count.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// The sum.
    pub total_tokens: usize,
}

/// vlmscale's report on how the request was served (`"vlmscale"` in responses and in the last chunk).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ServedInfo {
    /// The model that answered.
    pub model: String,
    /// V used.
    pub visual_tokens: usize,
    /// Q, text tokens of the templated prompt.
    pub text_tokens: usize,
    /// How V was produced: `none` (all patch tokens), `trained:quecc`, `trained:tokenpacker`,
    /// `trained:avgpool`, or a training-free method (`avgpool`).
    pub token_reduction: String,
    /// The V the request asked for, when it differs from [`Self::visual_tokens`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_visual_tokens: Option<usize>,
    /// Why V differs from the request's, or which default was applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The budget choice, for `budget` requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetChoice>,
    /// N, the LLM's parameters.
    pub llm_params: usize,
    /// The paper's 2·N·(Q + V) FLOPs of the prompt.
    pub prompt_flops: f64,
    /// Time from the request's arrival to the first token, ms (queueing included).
    pub ttft_ms: f64,
    /// Time spent in the queue waiting for the generation worker, ms (parsing and image decoding
    /// before it are in `ttft_ms` only).
    pub queue_ms: f64,
    /// Decode throughput after the first token, tokens/s (0 with one token or fewer).
    pub decode_tokens_per_s: f64,
}

/// What the server picked for a `budget` request.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BudgetChoice {
    /// `ttft_ms` or `flops`.
    pub kind: &'static str,
    /// The budget as the request gave it.
    pub budget: f64,
    /// Cost of the choice, in the budget's unit (ms or FLOPs).
    pub cost: f64,
    /// The law's predicted error at the choice.
    pub predicted_error: f64,
    /// Model chosen.
    pub model: String,
    /// V chosen.
    pub visual_tokens: usize,
    /// How many (model, V) candidates were weighed.
    pub candidates: usize,
}

/// A non-streamed response.
#[derive(Debug, Clone, Serialize)]
pub struct ChatResponse {
    /// `chatcmpl-…`.
    pub id: String,
    /// `chat.completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model that answered.
    pub model: String,
    /// One choice.
    pub choices: Vec<Choice>,
    /// Token counts.
    pub usage: Usage,
    /// vlmscale's report.
    pub vlmscale: ServedInfo,
}

/// A choice of a non-streamed response.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    /// 0.
    pub index: usize,
    /// The answer.
    pub message: AssistantMessage,
    /// `stop` (stop token or sequence) or `length` (max tokens or context full).
    pub finish_reason: &'static str,
}

/// The assistant's message.
#[derive(Debug, Clone, Serialize)]
pub struct AssistantMessage {
    /// `assistant`.
    pub role: &'static str,
    /// The text.
    pub content: String,
}

/// A conversation as the templates write it: an optional system prompt (replacing the template's),
/// earlier (user, assistant) exchanges, and the question now asked.
#[derive(Debug, Clone, Default)]
pub struct Dialogue {
    /// The request's `system` / `developer` messages, joined; `None` keeps the template's own.
    pub system: Option<String>,
    /// Earlier exchanges, in order.
    pub history: Vec<(String, String)>,
    /// The last user message: what is asked now (also the text QueCC's query embedding reads).
    pub question: String,
}

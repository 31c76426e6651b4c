//! Errors of the HTTP API: every failure a client can see is an [`ApiError`], answered as OpenAI's
//! error object `{"error": {"message", "type", "param", "code"}}` with the matching HTTP status
//! (OpenAI's API reference, "Error codes"; llama.cpp `tools/server/README.md` answers the same shape).
//! Start-up failures (a checkpoint that does not load, a bad address) are [`ServeError`].
use std::path::PathBuf;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// One client-visible error.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `rate_limit_error`,
    /// `server_error`, `not_found_error`, `timeout_error`, `unavailable_error`.
    pub kind: &'static str,
    /// Machine-readable `code` (also the `kind` label of `vlmscale_errors_total`).
    pub code: &'static str,
    /// The request field at fault (`messages[0].content[1].image_url.url`), if one is.
    pub param: Option<String>,
    /// What is wrong and, where there is one, what to do instead.
    pub message: String,
    /// `Retry-After` seconds (429, 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, kind, code, param: None, message: message.into(), retry_after: None }
    }

    /// 400 `invalid_request_error` with `code`.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request_error", code, message)
    }

    /// 400 naming the field at fault.
    pub fn invalid_param(code: &'static str, param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::invalid(code, message).with_param(param)
    }

    /// 401: missing or wrong bearer token.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "invalid_api_key",
            "missing or invalid API key: send `Authorization: Bearer KEY` with the server's --api-key",
        )
    }

    /// 404 for an unknown route or model.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found_error", code, message)
    }

    /// 405.
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "invalid_request_error",
            "method_not_allowed",
            "method not allowed on this path",
        )
    }

    /// 413: the body or an image is over a limit.
    pub fn too_large(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::PAYLOAD_TOO_LARGE, "invalid_request_error", code, message)
    }

    /// 429: the request queue is full.
    pub fn queue_full(capacity: usize) -> Self {
        Self {
            retry_after: Some(1),
            ..Self::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "queue_full",
                format!("the request queue is full ({capacity} waiting); retry later"),
            )
        }
    }

    /// 503: the server is shutting down.
    pub fn shutting_down() -> Self {
        Self {
            retry_after: Some(5),
            ..Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable_error",
                "shutting_down",
                "the server is shutting down and takes no new requests",
            )
        }
    }

    /// 504: the request did not finish within the server's --request-timeout.
    pub fn timeout(secs: f64) -> Self {
        Self::new(
            StatusCode::GATEWAY_TIMEOUT,
            "timeout_error",
            "timeout",
            format!("the request did not finish within the server's request timeout of {secs} s"),
        )
    }

    /// 500: a failure inside the engine that is not the request's fault.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "internal_error", message)
    }

    /// The same error naming `param`.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        #[derive(Serialize)]
        struct Inner<'a> {
            message: &'a str,
            #[serde(rename = "type")]
            kind: &'a str,
            param: Option<&'a str>,
            code: &'a str,
        }
        serde_json::json!({ "error": Inner {
            message: &self.message,
            kind: self.kind,
            param: self.param.as_deref(),
            code: self.code,
        }})
    }

    /// An engine error met while answering: the request's fault (400) unless it failed inside a
    /// tensor op (500).
    pub fn from_engine(e: &engine::Error) -> Self {
        match e {
            engine::Error::ContextWindow { .. } => Self::invalid("context_length_exceeded", e.to_string()),
            e if e.is_user_error() => Self::invalid("invalid_request", e.to_string()),
            e => Self::internal(e.to_string()),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(s) = self.retry_after {
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp.extensions_mut().insert(ErrorCode(self.code));
        resp
    }
}

/// The `code` of an error response, attached as a response extension so that the metrics layer can
/// count errors by kind.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

/// Failures to start the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A checkpoint did not load.
    #[error("loading model {}: {source}", dir.display())]
    Load {
        /// The checkpoint directory.
        dir: PathBuf,
        /// The engine's error.
        source: engine::Error,
    },
    /// A bad server option (duplicate model id, missing directory, …).
    #[error("{0}")]
    Config(String),
    /// Binding or serving failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl ServeError {
    /// Whether the user can fix it (a bad option or checkpoint), for the CLI's exit code.
    pub fn is_user_error(&self) -> bool {
        match self {
            ServeError::Load { source, .. } => source.is_user_error(),
            ServeError::Config(_) => true,
            ServeError::Io(_) => false,
        }
    }
}

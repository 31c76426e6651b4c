//! Typed errors of the engine. Every variant names the file, tensor or field at fault.
use std::path::PathBuf;

/// Result alias for the engine.
pub type Result<T> = std::result::Result<T, Error>;

/// Errors returned by the `vlm` crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed (shape mismatch inside an op, dtype, device); candle's message.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A configuration file is malformed or holds an unsupported value.
    #[error("{}: {msg}", path.display())]
    Config {
        /// The config file (e.g. `config.json`).
        path: PathBuf,
        /// What is wrong, naming the field.
        msg: String,
    },
    /// A weight has the wrong shape.
    #[error("tensor `{name}`: expected shape {expected:?}, found {found:?}")]
    Shape {
        /// Full tensor name in the checkpoint.
        name: String,
        /// Shape the model needs.
        expected: Vec<usize>,
        /// Shape stored in the checkpoint.
        found: Vec<usize>,
    },
    /// A weight is missing from the checkpoint.
    #[error("tensor `{name}` not found in {location}")]
    MissingTensor {
        /// Full tensor name.
        name: String,
        /// Where it was looked for (file or directory).
        location: String,
    },
    /// An image file could not be decoded.
    #[error("image {}: {msg}", path.display())]
    Image {
        /// The image file.
        path: PathBuf,
        /// Decoder message.
        msg: String,
    },
    /// A `tokenizer.json` is unreadable, or lacks a special token the conversation template needs.
    #[error("tokenizer {}: {msg}", path.display())]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What is wrong (naming the token).
        msg: String,
    },
    /// The LLM input (Q text tokens + V visual tokens, plus anything already cached) does not fit
    /// the context window `max_position_embeddings`.
    #[error("prompt of {len} tokens exceeds the context window (max_position_embeddings = {max})")]
    ContextWindow {
        /// Positions the input would need.
        len: usize,
        /// `max_position_embeddings` of the LLM.
        max: usize,
    },
    /// A checkpoint file is missing, truncated or corrupt.
    #[error("checkpoint file {}: {msg}", path.display())]
    Checkpoint {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// An argument is invalid (e.g. a visual-token count the compressor cannot produce).
    #[error("{0}")]
    Invalid(String),
    /// A weight cannot be stored or multiplied as q8_0/q4_0 (the quant crate's `QuantError`, e.g. a
    /// width that is not a multiple of 32, naming the tensor); `user_error` as [`Error::is_user_error`].
    #[error("{error}")]
    Quant {
        /// The quantised format's error.
        error: Box<dyn std::error::Error + Send + Sync>,
        /// Whether it is bad input (a shape or a block read from a file) rather than a misuse of the API.
        user_error: bool,
    },
}

impl Error {
    /// Whether the error is bad input the user can fix (a file, config, checkpoint, image, tokenizer,
    /// prompt length or argument); `false` only for a failure inside a tensor op ([`Error::Candle`]).
    /// The CLI exits with code 2 for user errors, 1 for the others.
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Candle(_) => false,
            Error::Quant { user_error, .. } => *user_error,
            _ => true,
        }
    }
}

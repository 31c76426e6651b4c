//! Typed errors of the `train` crate; every variant names the file, field or value at fault.
use std::path::PathBuf;

/// Result alias.
pub type Result<T> = std::result::Result<T, Error>;

/// Errors returned by training and evaluation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An engine error (bad checkpoint, shape, config, …).
    #[error(transparent)]
    Vlm(#[from] engine::Error),
    /// A data error (bad JSONL record, missing or unreadable image, bad dataset config, …).
    #[error(transparent)]
    Synth(#[from] synth::Error),
    /// A tensor operation failed.
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
    /// Unknown compressor name.
    #[error("unknown compressor {0:?} (quecc, quecc-noquery, tokenpacker, avgpool)")]
    UnknownCompressor(String),
    /// Unknown LLM size preset.
    #[error("unknown LLM size {0:?} (known: {1})")]
    UnknownSize(String, String),
    /// An invalid training/evaluation setting (naming the field).
    #[error("invalid setting `{field}`: {msg}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// A training checkpoint or trainer-state file is unusable.
    #[error("checkpoint {}: {msg}", path.display())]
    Checkpoint {
        /// The file or directory at fault.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// Answering one question of an evaluation set failed (e.g. a prompt longer than the context
    /// window): `image` is the sample id (its image file's stem), `question` the question's text.
    #[error("image `{image}`, question {question:?}: {inner}")]
    Question {
        /// The sample id.
        image: String,
        /// The question.
        question: String,
        /// Why it failed.
        inner: Box<Error>,
    },
    /// The loss became NaN or infinite.
    #[error("loss is not finite at step {step}: {loss}")]
    NonFiniteLoss {
        /// Optimiser step.
        step: usize,
        /// The loss value.
        loss: f64,
    },
}

impl Error {
    /// Whether the error is bad input the user can fix; `false` only for a failure inside one of the
    /// engine's tensor ops. The CLI exits with code 2 for user errors, 1 for the others.
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Vlm(e) => e.is_user_error(),
            Error::Question { inner, .. } => inner.is_user_error(),
            _ => true,
        }
    }

    /// [`Error::Io`] naming `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    /// [`Error::Config`] naming the setting `field`.
    pub fn config(field: &'static str, msg: impl Into<String>) -> Self {
        Error::Config { field, msg: msg.into() }
    }
}

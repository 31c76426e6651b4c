//! The crate's typed error: every variant names the file, line, field or value at fault.

use std::path::PathBuf;

/// Errors returned by `synth`. Bad user input (configs, JSONL files, PNG files, tokenizer files)
/// always becomes one of these, never a panic.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // variant fields are named by the variant's message
pub enum Error {
    /// A configuration field has an unsupported value.
    #[error("invalid config field `{field}`: {message}")]
    Config { field: &'static str, message: String },

    /// The objects of a scene could not be placed under the spacing rules within the attempt budget
    /// (image too small for the object size / spacing).
    #[error("cannot place {objects} objects of half-size {half_size} px at ≥ {min_distance} px spacing in a {image_size}×{image_size} image after {attempts} attempts")]
    SceneDoesNotFit { objects: usize, half_size: u32, min_distance: u32, image_size: u32, attempts: usize },

    /// An I/O operation on a file or directory failed.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },

    /// A JSONL line is not valid JSON or does not have the record's shape.
    #[error("{path}:{line}: malformed JSONL record: {source}")]
    Json { path: PathBuf, line: usize, source: serde_json::Error },

    /// A JSONL record parsed but holds a bad value (wrong role, missing `<image>`, unknown family, …).
    #[error("{path}:{line}: {message}")]
    BadRecord { path: PathBuf, line: usize, message: String },

    /// A JSONL record refers to an image file that does not exist.
    #[error("{path}:{line}: image file {image} does not exist")]
    MissingImage { path: PathBuf, line: usize, image: PathBuf },

    /// An image file could not be decoded or encoded.
    #[error("{path}: cannot read/write image: {source}")]
    Image { path: PathBuf, source: image::ImageError },

    /// Building, loading, saving or running the tokenizer failed.
    #[error("tokenizer{}: {message}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Tokenizer { path: Option<PathBuf>, message: String },
}

impl Error {
    /// Whether the error is bad input the user can fix: every error of this crate is (a setting, a
    /// file, a record, an image, a tokenizer). The CLI exits with code 2 for user errors.
    pub fn is_user_error(&self) -> bool {
        true
    }
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub(crate) fn config(field: &'static str, message: impl Into<String>) -> Self {
        Error::Config { field, message: message.into() }
    }
}

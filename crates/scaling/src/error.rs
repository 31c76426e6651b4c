//! Typed errors of the scaling crate. Every data error names the file, line and field at fault.
use std::path::PathBuf;

/// Result alias for the scaling crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Errors returned by the scaling crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A value in a scores CSV is missing, unparsable or out of range.
    #[error("{file}:{line}: field `{field}`: {msg}")]
    Data {
        /// The CSV file (or `<embedded …>` for shipped data).
        file: String,
        /// 1-based line number in the file (the header is line 1).
        line: usize,
        /// The column name.
        field: String,
        /// What is wrong.
        msg: String,
    },
    /// The CSV as a whole is unusable (missing column, no rows, too few cells for the law).
    #[error("{file}: {msg}")]
    Dataset {
        /// The CSV file.
        file: String,
        /// What is wrong.
        msg: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A JSON file (saved fit, model config) is malformed or lacks a field.
    #[error("{}: {msg}", path.display())]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// What is wrong, naming the field.
        msg: String,
    },
    /// An argument is out of its domain (budget ≤ 0, empty set of sizes, …).
    #[error("{0}")]
    Invalid(String),
    /// The optimiser failed.
    #[error("optimiser: {0}")]
    Optimiser(String),
    /// Drawing a plot failed.
    #[error("plot {}: {msg}", path.display())]
    Plot {
        /// The output file.
        path: PathBuf,
        /// The backend's message.
        msg: String,
    },
}

impl Error {
    /// Whether the error is bad input the user can fix (data, dataset, JSON, an invalid value, an
    /// unreadable or unwritable file): the CLI exits with code 2 for these, 1 for the others.
    pub fn is_user_error(&self) -> bool {
        matches!(
            self,
            Error::Data { .. } | Error::Dataset { .. } | Error::Json { .. } | Error::Invalid(_) | Error::Io { .. }
        )
    }
}

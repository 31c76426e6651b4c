//! Errors of the evaluation crate. Every error about an input names its file, and its line where
//! there is one (lines are 1-based).
use std::fmt;
use std::path::{Path, PathBuf};

/// Errors reading evaluation files, generating answers or scoring them. All of them are caused by the
/// input (a missing or malformed file, an id absent from the annotations), except [`Error::Io`] on
/// writing and some [`Error::Model`] failures.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened, read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A problem on one line of a file (malformed JSON, a missing field, an unknown id).
    #[error("{}:{line}: {message}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The model failed on one question (not a bad input line: a tensor or I/O error of the engine).
    #[error("{}:{line}: {source}", path.display())]
    Model {
        /// The question file.
        path: PathBuf,
        /// 1-based line (item) number of the question.
        line: usize,
        /// The engine's error.
        source: engine::Error,
    },
    /// A problem with a file as a whole (not JSON, empty, missing a key, a bad directory entry).
    #[error("{}: {message}", path.display())]
    File {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the error is the user's to fix: every error of this crate is about an input file,
    /// except a model failure that is not the checkpoint's fault (the CLI exits with code 2 for user
    /// errors).
    pub fn is_user_error(&self) -> bool {
        match self {
            Error::Model { source, .. } => source.is_user_error(),
            _ => true,
        }
    }

    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.to_path_buf(), source }
    }
    pub(crate) fn line(path: &Path, line: usize, message: impl Into<String>) -> Self {
        Error::Line { path: path.to_path_buf(), line, message: message.into() }
    }
    pub(crate) fn file(path: &Path, message: impl Into<String>) -> Self {
        Error::File { path: path.to_path_buf(), message: message.into() }
    }
}

/// A line that was skipped (not fatal): where it is and why.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct LineIssue {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number (for a JSON array file: the 1-based item number).
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for LineIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.path.display(), self.line, self.message)
    }
}

//! Errors of the sweep crate: each names the file, key or cell it concerns.
use std::path::PathBuf;

/// A sweep error.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The sweep config is invalid: `file`, the offending `key` (TOML path) and what is wrong.
    #[error("{file}: `{key}`: {msg}")]
    Config {
        /// The config file.
        file: String,
        /// The offending key (TOML path).
        key: String,
        /// What is wrong.
        msg: String,
    },
    /// The sweep config is not valid TOML, or a value has the wrong type: `file`, 1-based `line` and
    /// `column` (in characters) of the error's start, and what is wrong.
    #[error("{file}:{line}:{column}: {msg}")]
    Syntax {
        /// The config file.
        file: String,
        /// Line, from 1.
        line: usize,
        /// Column in characters, from 1.
        column: usize,
        /// The TOML parser's message.
        msg: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A cell result JSON is corrupt or does not match its cell.
    #[error("{path}: {msg}")]
    CellFile {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A cell's runner failed (training or evaluation); `cell` is the cell id.
    #[error("cell `{cell}`: {msg}")]
    Runner {
        /// The cell id.
        cell: String,
        /// What is wrong.
        msg: String,
    },
    /// An LLM size name that is not a train-crate preset (and has no explicit `params`).
    #[error("LLM size `{name}`: {msg}")]
    Preset {
        /// The size name.
        name: String,
        /// What is wrong.
        msg: String,
    },
    /// The frozen vision tower of the sweep could not be pretrained or loaded (`dir` is its folder).
    #[error("vision tower {dir}: {msg}")]
    Tower {
        /// The tower folder.
        dir: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A finished cell's result was produced by another runner or with other training settings than
    /// the config now asks for: it is neither reused silently nor overwritten.
    #[error("{path}: {msg}")]
    Stale {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// Another run holds the results folder `dir` with other settings ([`crate::lock::SweepLock`]).
    #[error("results folder {dir} {msg}")]
    Busy {
        /// The results folder.
        dir: PathBuf,
        /// Who holds it and what to do.
        msg: String,
    },
    /// `--index` is outside the grid.
    #[error("cell index {index} is out of range: the grid of {file} has {cells} cells (0..{cells})")]
    Index {
        /// The config file.
        file: String,
        /// The index asked for.
        index: usize,
        /// Cells in the grid.
        cells: usize,
    },
    /// Some cells of the sweep failed (the others finished); ids listed.
    #[error("{} of {total} cells failed: {}", failed.len(), failed.join(", "))]
    CellsFailed {
        /// Ids of the failed cells.
        failed: Vec<String>,
        /// Cells in the sweep.
        total: usize,
    },
    /// An error of the scaling crate (CSV schema, fit, plots).
    #[error(transparent)]
    Scaling(#[from] scaling::Error),
}

impl Error {
    /// Whether the error is bad input the user can fix (a config key, a `--index` out of range, a
    /// results folder in use by a run with other settings): the CLI exits with code 2 for these, 1 for
    /// the others (a failed cell, a stale result, I/O during a run).
    pub fn is_user_error(&self) -> bool {
        matches!(self, Error::Config { .. } | Error::Syntax { .. } | Error::Index { .. } | Error::Busy { .. })
    }
}

/// Result alias of the sweep crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Wraps an I/O error with its path.
pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io { path: path.to_path_buf(), source }
}

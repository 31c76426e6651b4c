//! Locating and running the peers the benchmarks compare with.
//!
//! The PyTorch peers are Python scripts in one `peers/` folder of the source tree (installed as
//! `share/vlmscale/peers`). They are found at run time, never through a build-time path:
//! [`PeersDir::locate`] takes an explicit `--peers-dir`, else the first existing candidate of
//! [`PeersDir::candidates`] (next to the binary, the install prefix's share directory, the cargo
//! target layout of a source checkout, the working directory).
//!
//! The in-process candle-transformers peers are in [`candle`] (cargo feature `peers`).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Errors of locating a peer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `--peers-dir` names a directory without the scripts.
    #[error("--peers-dir {}: no `{script}` there (the `peers/` folder of the vlmscale sources)", dir.display())]
    NotAPeersDir {
        /// The directory given.
        dir: PathBuf,
        /// The script looked for.
        script: String,
    },
    /// No candidate directory holds the scripts.
    #[error("the `peers/` folder with the PyTorch peer scripts was not found (looked in: {}); pass --peers-dir DIR", .looked.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    NotFound {
        /// Every directory looked in.
        looked: Vec<PathBuf>,
    },
}

impl Error {
    /// Whether the error is the user's to fix (a bad `--peers-dir`): exit code 2.
    pub fn is_user_error(&self) -> bool {
        matches!(self, Error::NotAPeersDir { .. })
    }
}

/// The folder holding the peer scripts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeersDir(PathBuf);

/// A script every peers folder holds (used to recognise one).
const MARKER: &str = "bench_infer_torch.py";

impl PeersDir {
    /// Directories looked in when no `--peers-dir` is given, in order: `<bin>/peers`,
    /// `<bin>/../share/vlmscale/peers` (an install prefix), `<bin>/../../peers` (cargo's
    /// `target/<profile>/` inside a source checkout), `./peers`.
    pub fn candidates() -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Some(bin) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
            out.push(bin.join("peers"));
            out.push(bin.join("../share/vlmscale/peers"));
            out.push(bin.join("../../peers"));
        }
        out.push(PathBuf::from("peers"));
        out
    }

    /// The peers folder: `explicit` if given (error if it lacks the scripts), else the first of
    /// [`PeersDir::candidates`] holding them.
    ///
    /// Errors: [`Error::NotAPeersDir`] for a bad explicit folder, [`Error::NotFound`] listing the
    /// candidates when none holds the scripts.
    pub fn locate(explicit: Option<&Path>) -> Result<Self, Error> {
        if let Some(dir) = explicit {
            return if dir.join(MARKER).is_file() {
                Ok(Self(dir.to_path_buf()))
            } else {
                Err(Error::NotAPeersDir { dir: dir.to_path_buf(), script: MARKER.into() })
            };
        }
        let looked = Self::candidates();
        match looked.iter().find(|d| d.join(MARKER).is_file()) {
            Some(d) => Ok(Self(d.clone())),
            None => Err(Error::NotFound { looked }),
        }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Path of script `name` in the folder.
    pub fn script(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// Runs `python script args…` and waits for it (stdout and stderr captured).
    pub fn run<I, S>(&self, python: &str, script: &str, args: I) -> std::io::Result<Output>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        Command::new(python).arg(self.script(script)).args(args).output()
    }
}

#[cfg(feature = "peers")]
pub mod candle;

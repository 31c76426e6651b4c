//! Atomic file output (the `atomic-write-file` crate): the bytes go to a temporary file in the
//! destination folder, which is synced to disk and renamed over the destination (the folder synced
//! too), so a reader (or a crash) never sees a half-written file and an existing file is replaced only
//! when the new one is complete.
use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically.
///
/// Errors: [`Error::Io`] naming `path` when the folder is not writable or the rename fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let mut file = atomic_write_file::AtomicWriteFile::open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.commit().map_err(io)
}

//! Atomic file output (the `atomic-write-file` crate): the bytes go to a temporary file in the
//! destination folder, which is synced to disk and renamed over the destination (the folder synced
//! too), so a reader (or a crash) never sees a half-written file and an existing file is replaced only
//! when the new one is complete.
use crate::error::{Error, Result};
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically. The file gets the mode a new file gets (0666 less the
/// umask), or the mode of the file it replaces.
///
/// Errors: [`Error::Io`] naming `path` when it is a folder (checked first: nothing is written), the
/// folder is not writable or the rename fails.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    refuse_folder(path).map_err(io)?;
    let mut file = atomic_write_file::AtomicWriteFile::open(path).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.commit().map_err(io)
}

/// An error when `path` is an existing folder: the temporary file written next to it could not
/// replace it, and would be left behind.
///
/// Errors: [`std::io::ErrorKind::IsADirectory`] saying so.
pub fn refuse_folder(path: &Path) -> std::io::Result<()> {
    if path.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "is an existing folder, not a file: give a file path",
        ));
    }
    Ok(())
}

//! One run per results folder at a time.
//!
//! * **Sweep-wide lock**: a run of the grid (`vlmscale sweep`, `vlmscale reproduce`) holds an
//!   exclusive OS file lock on `<results_dir>/sweep.lock` from before the vision tower until its
//!   report is written ([`SweepLock::acquire`]); the OS releases it when the holder exits, even by a
//!   crash. The file records the holder's settings ([`LockRecord`]: the SHA-256 of the grid's cells,
//!   each with the runner's settings, and of the config's `[train]`, `[vision]` and `[report]`). A
//!   second run on the same folder either waits for the first (same settings: it then reuses every
//!   cell the first finished) or fails at once with [`Error::Busy`] (other settings: their results
//!   would mix).
//! * **Per-cell lock**: a cell is trained under an exclusive lock on `cells/<id>.lock`
//!   ([`CellLock`]), and a result that appeared while waiting for it is reused, so Slurm array tasks
//!   (which share a folder by design and do not take the sweep-wide lock) never train a cell twice
//!   either.
use crate::error::{io, Error, Result};
use crate::grid::{Cell, SweepConfig};
use crate::runner::CellRunner;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The sweep-wide lock file inside the results folder.
pub const LOCK_FILE: &str = "sweep.lock";

/// How long a run waits for the holder of the lock to record its settings (it does so right after
/// taking the lock) before giving up with [`Error::Busy`].
const RECORD_WAIT: Duration = Duration::from_secs(5);

/// What the holder of the sweep-wide lock writes into the lock file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LockRecord {
    /// Process id of the holder.
    pub pid: u32,
    /// Sweep name.
    pub sweep: String,
    /// The holder's config file, as given.
    pub config: PathBuf,
    /// The holder's runner (`train`, `synthetic`).
    pub runner: String,
    /// SHA-256 (hex) of the settings: see [`settings_sha256`].
    pub settings_sha256: String,
}

/// SHA-256 (hex) of everything that decides what a run of `cfg` with `runner` writes: the runner's
/// name, every cell (id, N, V, task, compressor, seed) with the runner's settings for it
/// ([`CellRunner::settings`]), and the config's `[train]`, `[vision]` and `[report]` tables. The config
/// file's path and the results folder are not part of it.
pub fn settings_sha256(cfg: &SweepConfig, runner: &dyn CellRunner) -> String {
    let cells: Vec<serde_json::Value> =
        cfg.cells().iter().map(|c| serde_json::json!({ "cell": c, "settings": runner.settings(c) })).collect();
    let v = serde_json::json!({
        "runner": runner.name(),
        "sweep": cfg.name,
        "cells": cells,
        "train": cfg.train,
        "vision": cfg.vision,
        "report": cfg.report,
    });
    Sha256::digest(v.to_string().as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The sweep-wide lock, held until dropped (see the module docs).
#[derive(Debug)]
pub struct SweepLock {
    file: File,
    path: PathBuf,
}

impl SweepLock {
    /// Takes the lock of `cfg`'s results folder (creating the folder) for a run of `cfg` with
    /// `runner`. When another run holds it with the same settings, calls `on_wait` with that run's
    /// record once and waits until it is released.
    ///
    /// Errors: [`Error::Busy`] naming the results folder when another run holds it with other
    /// settings (or does not record them within a few seconds); [`Error::Io`] for the lock file.
    pub fn acquire(cfg: &SweepConfig, runner: &dyn CellRunner, on_wait: &mut dyn FnMut(&LockRecord)) -> Result<Self> {
        let dir = &cfg.results_dir;
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(LOCK_FILE);
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io(&path))?;
        let want = LockRecord {
            pid: std::process::id(),
            sweep: cfg.name.clone(),
            config: cfg.path.clone(),
            runner: runner.name().to_string(),
            settings_sha256: settings_sha256(cfg, runner),
        };
        let busy = |msg: String| Error::Busy { dir: dir.clone(), msg };
        let t0 = std::time::Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(io(&path)(e)),
            }
            // The holder records its settings right after taking the lock (and clears them when it
            // releases it): an empty or partial record means "not yet".
            match read_record(&mut file).map_err(io(&path))? {
                Some(holder) if holder.settings_sha256 != want.settings_sha256 => {
                    return Err(busy(format!(
                        "is in use by another run (process {}, sweep `{}`, config {}, runner `{}`) with other settings than this run's (config {}, runner `{}`): their results would mix; wait for it to finish or use another results folder",
                        holder.pid,
                        holder.sweep,
                        holder.config.display(),
                        holder.runner,
                        want.config.display(),
                        want.runner
                    )));
                }
                Some(holder) => {
                    on_wait(&holder);
                    file.lock().map_err(io(&path))?;
                    break;
                }
                None if t0.elapsed() > RECORD_WAIT => {
                    return Err(busy(format!(
                        "is locked by another process ({} holds a lock but records no settings): wait for it to finish or use another results folder",
                        path.display()
                    )));
                }
                None => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        let json = serde_json::to_string_pretty(&want).expect("LockRecord serialises");
        let write = |f: &mut File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
            f.write_all(json.as_bytes())?;
            f.sync_data()
        };
        write(&mut file).map_err(io(&path))?;
        Ok(SweepLock { file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SweepLock {
    fn drop(&mut self) {
        // Clear the record before releasing, so a waiting run does not read a finished one's.
        let _ = self.file.set_len(0);
        let _ = self.file.unlock();
    }
}

/// The record in an open lock file (`None` while empty or incomplete).
fn read_record(file: &mut File) -> std::io::Result<Option<LockRecord>> {
    file.seek(SeekFrom::Start(0))?;
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    Ok(serde_json::from_str(&text).ok())
}

/// The per-cell lock (`cells/<id>.lock`), held until dropped.
#[derive(Debug)]
pub struct CellLock {
    file: File,
}

impl CellLock {
    /// Takes `cell`'s lock in `cells_dir`, waiting while another process holds it.
    ///
    /// Errors: [`Error::Io`] for the lock file.
    pub fn acquire(cells_dir: &Path, cell: &Cell) -> Result<Self> {
        let path = cells_dir.join(format!("{}.lock", cell.id));
        let file = OpenOptions::new().write(true).create(true).truncate(false).open(&path).map_err(io(&path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                eprintln!("cell `{}`: waiting for another process that is running it ({})", cell.id, path.display());
                file.lock().map_err(io(&path))?;
            }
            Err(TryLockError::Error(e)) => return Err(io(&path)(e)),
        }
        Ok(CellLock { file })
    }
}

impl Drop for CellLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

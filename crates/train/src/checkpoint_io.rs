//! Checkpoints in the LLaVA layout the engine loads (`engine::checkpoint::Checkpoint`), written
//! atomically, plus the trainer state needed to resume.
//!
//! Directory contents:
//! - `config.json`: the Qwen2 HF config plus LLaVA's `mm_*` keys (`mm_projector_type` `mlp2x_gelu`,
//!   `mm_hidden_size` d, `mm_vision_tower` = the tower directory, `mm_vision_select_layer` −1,
//!   `mm_vision_token_compression_type` `quecc` | `token-packer` | `avgpool`, kernel = stride = G/√V,
//!   `mm_vision_output_token_count` G², `mm_vision_output_text_embedding_size` H) and three
//!   keys the authors' code lacks: `vlmscale_compressor` (which also tells the QueCC ablation apart),
//!   `vlmscale_visual_tokens` V, and the multi-level layers under the key the engine reads
//!   (`engine::model::MULTI_SELECT_LAYERS_KEY`), so `generate`/`inspect` load what training writes;
//! - `model.safetensors`: LLM (`model.*`; `lm_head` tied) and `model.mm_projector.*`;
//! - `tokenizer.json`;
//! - while training: `trainer_state.json` (step, settings, losses) and `optimizer.safetensors`
//!   (AdamW moments, torch's `exp_avg` / `exp_avg_sq` names).
//!
//! Atomicity: a checkpoint is written into a fresh sibling directory `DIR.tmp`, then swapped in by
//! renames (`DIR` → `DIR.old`, `DIR.tmp` → `DIR`, delete `DIR.old`). A crash leaves either the old
//! or the new checkpoint complete; [`recover`] finishes an interrupted swap. Files in `DIR` that the
//! checkpoint does not manage (an `eval.json` written beside the weights, notes) are carried into
//! the new checkpoint (hard-linked, or copied), so saving never deletes them.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use candle_nn::VarMap;
use models::decoder::DecoderConfig;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{CompressorKind, VlmArch};
use crate::optim::AdamW;
use crate::{Error, Result};

/// Trainer state file name.
pub const TRAINER_STATE_FILE: &str = "trainer_state.json";
/// Optimiser state file name.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut s = dir.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Finishes an interrupted swap: if `DIR` is missing but `DIR.old` exists, restores it; removes a
/// stale `DIR.tmp`. Errors: I/O.
pub fn recover(dir: &Path) -> Result<()> {
    let (old, tmp) = (sibling(dir, ".old"), sibling(dir, ".tmp"));
    if !dir.exists() && old.is_dir() {
        std::fs::rename(&old, dir).map_err(|e| Error::io(&old, e))?;
    }
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    if old.exists() && dir.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(())
}

/// The top-level names a training checkpoint manages: written by [`save_checkpoint`] or by the end of
/// an LLM pretraining run, and removed when a save leaves them out (the trainer and optimiser state of
/// a finished run; the manifest of a run that is being continued). Anything else in the directory is
/// the user's and survives every save.
pub const MANAGED_FILES: [&str; 7] = [
    "config.json",
    engine::checkpoint::WEIGHTS_FILE,
    "tokenizer.json",
    OPTIMIZER_FILE,
    TRAINER_STATE_FILE,
    crate::llm_pretrain::MANIFEST_FILE,
    crate::llm_pretrain::LOSSES_FILE,
];

/// Copies into `to` every entry of `from` that `to` lacks and whose top-level name is not in
/// `managed`: files hard-linked (copied where links fail), directories recursively, symlinks as
/// symlinks. Errors: I/O naming the entry.
fn carry_over(from: &Path, to: &Path, managed: &[&str]) -> Result<()> {
    for entry in std::fs::read_dir(from).map_err(|e| Error::io(from, e))? {
        let entry = entry.map_err(|e| Error::io(from, e))?;
        let name = entry.file_name();
        if managed.iter().any(|m| name == *m) {
            continue;
        }
        let (src, dst) = (entry.path(), to.join(&name));
        if dst.symlink_metadata().is_ok() {
            continue;
        }
        let kind = entry.file_type().map_err(|e| Error::io(&src, e))?;
        if kind.is_symlink() {
            let target = std::fs::read_link(&src).map_err(|e| Error::io(&src, e))?;
            #[cfg(unix)]
            std::os::unix::fs::symlink(&target, &dst).map_err(|e| Error::io(&dst, e))?;
            #[cfg(not(unix))]
            std::fs::copy(&src, &dst).map(|_| ()).map_err(|e| Error::io(&dst, e))?;
        } else if kind.is_dir() {
            std::fs::create_dir(&dst).map_err(|e| Error::io(&dst, e))?;
            carry_over(&src, &dst, &[])?;
        } else if std::fs::hard_link(&src, &dst).is_err() {
            std::fs::copy(&src, &dst).map_err(|e| Error::io(&dst, e))?;
        }
    }
    Ok(())
}

/// Writes a directory atomically: `fill` populates a fresh `DIR.tmp`, which then replaces `DIR`;
/// entries of the old `DIR` that `fill` did not write and that are not in `managed` are carried over
/// first, so they survive the swap. Errors: I/O, or whatever `fill` returns (the old `DIR` is then
/// untouched).
pub fn write_dir_atomic(dir: &Path, managed: &[&str], fill: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    recover(dir)?;
    let (old, tmp) = (sibling(dir, ".old"), sibling(dir, ".tmp"));
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
    let filled = fill(&tmp).and_then(|()| if dir.is_dir() { carry_over(dir, &tmp, managed) } else { Ok(()) });
    if let Err(e) = filled {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(e);
    }
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| Error::io(&tmp, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| Error::io(&old, e))?;
    }
    Ok(())
}

/// Writes `varmap`'s variables as a safetensors file at `path` ([`save_tensors`]).
/// Errors: I/O naming `path`.
pub fn save_varmap(varmap: &VarMap, path: &Path) -> Result<()> {
    let data = varmap.data().lock().unwrap_or_else(|p| p.into_inner());
    save_tensors(path, data.iter().map(|(k, v)| (k.as_str(), v.as_tensor())))
}

/// Writes named tensors as a safetensors file at `path` through [`write_atomic`], so the file gets
/// the mode of any new file (0666 less the umask; `safetensors::serialize_to_file`, which candle's
/// `save` uses, publishes a 0600 scratch file instead). Errors: I/O naming `path`.
pub fn save_tensors<'a>(path: &Path, tensors: impl IntoIterator<Item = (&'a str, &'a Tensor)>) -> Result<()> {
    let bytes = safetensors::serialize(tensors, None).map_err(|e| Error::io(path, std::io::Error::other(e)))?;
    write_atomic(path, &bytes)
}

/// Writes `value` as pretty JSON to `path` atomically ([`write_atomic`]). Errors: I/O.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::config("json", e.to_string()))?;
    write_atomic(path, text.as_bytes())
}

/// Writes `bytes` to `path` atomically (the `atomic-write-file` crate: a temporary file in the same
/// directory, synced to disk, renamed over `path`; mode 0666 less the umask). Errors: I/O naming
/// `path`, also when it is an existing folder (checked first: nothing is written).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    scaling::output::refuse_folder(path).map_err(|e| Error::io(path, e))?;
    let mut file = atomic_write_file::AtomicWriteFile::open(path).map_err(|e| Error::io(path, e))?;
    file.write_all(bytes).map_err(|e| Error::io(path, e))?;
    file.commit().map_err(|e| Error::io(path, e))
}

/// Progress of a training run, saved next to the weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Optimiser steps completed.
    pub step: usize,
    /// The run's settings (compared on resume).
    pub settings: Value,
    /// Loss of every completed step.
    pub losses: Vec<f64>,
    /// Wall time spent so far, s.
    pub wall_s: f64,
}

/// The `config.json` of a trained VLM (see the module docs).
pub fn config_json(arch: &VlmArch, llm_config: &Value, tower_dir: &Path, multi_layers: &[i64]) -> Result<Value> {
    let mut cfg = llm_config.clone();
    let obj = cfg.as_object_mut().ok_or_else(|| Error::config("llm config", "not a JSON object"))?;
    let side = (arch.visual_tokens as f64).sqrt().round() as usize;
    let kernel = arch.grid / side.max(1);
    let mm_type = match arch.compressor {
        CompressorKind::Quecc | CompressorKind::QueccNoQuery => "quecc",
        CompressorKind::Tokenpacker => "token-packer",
        CompressorKind::Avgpool => "avgpool",
        CompressorKind::None => "none",
    };
    let tower = std::fs::canonicalize(tower_dir).map_err(|e| Error::io(tower_dir, e))?;
    let extra = serde_json::json!({
        "mm_vision_tower": tower.to_string_lossy(),
        "mm_projector_type": "mlp2x_gelu",
        "mm_hidden_size": arch.vision_dim,
        "mm_vision_select_layer": -1,
        "mm_vision_select_feature": "patch",
        "mm_vision_token_compression_type": mm_type,
        "mm_vision_token_compression_kernel_size": kernel,
        "mm_vision_token_compression_stride": kernel,
        "mm_vision_output_token_count": arch.grid * arch.grid,
        "mm_vision_output_text_embedding_size": arch.llm.hidden_size,
        "mm_patch_merge_type": "flat",
        "mm_use_im_start_end": false,
        "image_aspect_ratio": "square",
        "tokenizer_model_max_length": arch.llm.max_position_embeddings,
        (engine::model::COMPRESSOR_KEY): arch.compressor.name(),
        (engine::model::MULTI_SELECT_LAYERS_KEY): multi_layers,
        "vlmscale_visual_tokens": arch.visual_tokens,
    });
    for (k, v) in extra.as_object().into_iter().flatten() {
        obj.insert(k.clone(), v.clone());
    }
    Ok(cfg)
}

/// What a checkpoint's `config.json` says about the VLM: the architecture and the tower directory.
#[derive(Debug, Clone)]
pub struct SavedVlm {
    /// Shapes of the VLM.
    pub arch: VlmArch,
    /// The tower directory (`mm_vision_tower`).
    pub tower_dir: PathBuf,
}

/// Reads the VLM description of checkpoint `dir`. Errors: unreadable/malformed `config.json`, or a
/// missing/invalid `vlmscale_*` / `mm_*` key ([`Error::Checkpoint`] naming it).
pub fn read_saved_vlm(dir: &Path) -> Result<SavedVlm> {
    let path = dir.join("config.json");
    let llm = DecoderConfig::from_file(&path)?;
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let v: Value =
        serde_json::from_str(&text).map_err(|e| Error::Checkpoint { path: path.clone(), msg: e.to_string() })?;
    let bad = |k: &str| Error::Checkpoint { path: path.clone(), msg: format!("missing or invalid key `{k}`") };
    let num = |k: &str| v.get(k).and_then(Value::as_u64).map(|x| x as usize).ok_or_else(|| bad(k));
    let compressor = crate::model::trainable_compressor(
        v.get(engine::model::COMPRESSOR_KEY)
            .and_then(Value::as_str)
            .ok_or_else(|| bad(engine::model::COMPRESSOR_KEY))?,
    )?;
    let visual_tokens = num("vlmscale_visual_tokens")?;
    let vision_dim = num("mm_hidden_size")?;
    let g2 = num("mm_vision_output_token_count")?;
    let grid = (g2 as f64).sqrt().round() as usize;
    let tower = v.get("mm_vision_tower").and_then(Value::as_str).ok_or_else(|| bad("mm_vision_tower"))?;
    let tower_dir = if Path::new(tower).is_absolute() { PathBuf::from(tower) } else { dir.join(tower) };
    Ok(SavedVlm { arch: VlmArch { llm, compressor, visual_tokens, vision_dim, grid }, tower_dir })
}

/// Saves a checkpoint atomically: `config.json`, `model.safetensors` (all of `varmap`),
/// `tokenizer.json` (the bytes given), and, if `state` is given, the trainer and optimiser state.
/// Errors: I/O, tensor serialisation.
pub fn save_checkpoint(
    dir: &Path,
    config: &Value,
    varmap: &VarMap,
    tokenizer_json: &[u8],
    state: Option<(&TrainerState, &AdamW)>,
) -> Result<()> {
    write_dir_atomic(dir, &MANAGED_FILES, |tmp| {
        let text = serde_json::to_string_pretty(config).map_err(|e| Error::config("config", e.to_string()))?;
        std::fs::write(tmp.join("config.json"), text).map_err(|e| Error::io(tmp.join("config.json"), e))?;
        save_varmap(varmap, &tmp.join(engine::checkpoint::WEIGHTS_FILE))?;
        std::fs::write(tmp.join("tokenizer.json"), tokenizer_json)
            .map_err(|e| Error::io(tmp.join("tokenizer.json"), e))?;
        if let Some((st, opt)) = state {
            let state = opt.state_tensors()?;
            save_tensors(&tmp.join(OPTIMIZER_FILE), state.iter().map(|(k, v)| (k.as_str(), v)))?;
            write_json_atomic(&tmp.join(TRAINER_STATE_FILE), st)?;
        }
        Ok(())
    })
}

/// The trainer state and optimiser moments of checkpoint `dir`, or `None` if it has no trainer state.
/// Errors: a corrupt state or optimiser file ([`Error::Checkpoint`] naming it).
pub fn load_trainer_state(dir: &Path) -> Result<Option<(TrainerState, HashMap<String, Tensor>)>> {
    recover(dir)?;
    let sp = dir.join(TRAINER_STATE_FILE);
    if !sp.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&sp).map_err(|e| Error::io(&sp, e))?;
    let st: TrainerState =
        serde_json::from_str(&text).map_err(|e| Error::Checkpoint { path: sp.clone(), msg: e.to_string() })?;
    let op = dir.join(OPTIMIZER_FILE);
    let bytes = std::fs::read(&op).map_err(|e| Error::io(&op, e))?;
    let moments = candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
        .map_err(|e| Error::Checkpoint { path: op.clone(), msg: format!("not a valid safetensors file: {e}") })?;
    Ok(Some((st, moments)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: PathBuf) -> String {
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    /// A save replaces what the checkpoint manages (a managed file it leaves out disappears) and keeps
    /// everything else; a failing fill leaves the old directory as it was.
    #[test]
    fn saving_keeps_the_users_files_and_drops_managed_ones_left_out() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ckpt");
        write_dir_atomic(&dir, &MANAGED_FILES, |t| {
            std::fs::write(t.join("config.json"), "1").unwrap();
            std::fs::write(t.join(OPTIMIZER_FILE), "moments").unwrap();
            Ok(())
        })
        .unwrap();
        std::fs::write(dir.join("eval.json"), "scores").unwrap();
        std::fs::create_dir_all(dir.join("plots").join("deep")).unwrap();
        std::fs::write(dir.join("plots").join("deep").join("a.svg"), "<svg/>").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink("eval.json", dir.join("latest")).unwrap();

        write_dir_atomic(&dir, &MANAGED_FILES, |t| {
            std::fs::write(t.join("config.json"), "2").unwrap();
            Ok(())
        })
        .unwrap();
        assert_eq!(read(dir.join("config.json")), "2");
        assert!(!dir.join(OPTIMIZER_FILE).exists(), "a managed file the save leaves out is gone");
        assert_eq!(read(dir.join("eval.json")), "scores");
        assert_eq!(read(dir.join("plots").join("deep").join("a.svg")), "<svg/>");
        #[cfg(unix)]
        assert_eq!(std::fs::read_link(dir.join("latest")).unwrap(), PathBuf::from("eval.json"));
        assert!(!sibling(&dir, ".tmp").exists() && !sibling(&dir, ".old").exists());

        let failed = write_dir_atomic(&dir, &MANAGED_FILES, |t| {
            std::fs::write(t.join("config.json"), "3").unwrap();
            Err(Error::config("test", "fill fails"))
        });
        assert!(failed.is_err());
        assert_eq!(read(dir.join("config.json")), "2");
        assert_eq!(read(dir.join("eval.json")), "scores");
        assert!(!sibling(&dir, ".tmp").exists());
    }
}

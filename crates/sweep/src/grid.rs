//! The sweep config (TOML) and its expansion into an ordered list of cells.
//!
//! Schema (every key documented in `sweeps/default.toml`):
//!
//! ```toml
//! name = "default"            # sweep name (job names, report title)
//! results_dir = "../results/default"   # relative to this file's folder (or absolute)
//! steps = 300                 # training steps per cell
//! seed = 0                    # training / evaluation seed
//! visual_tokens = [1, 4, 16, 64]        # V, ascending order is kept as written
//! compressors = ["quecc", "quecc-noquery"]
//! tasks = ["sort_of_clevr", "fine_detail"]
//! [[llm]]                     # one table per LLM size, in the order given
//! name = "qwen2-tiny"         # a train-crate preset name
//! params = 0.0012             # N in billions (what the law is fitted on)
//! [report]                    # optional: which names the report's claims refer to
//! reasoning_task = "sort_of_clevr"
//! fine_detail_task = "fine_detail"
//! quecc = "quecc"
//! query_free = "quecc-noquery"
//! ```
//!
//! Cells are expanded task-major, then LLM (as listed), then V, then compressor; a cell's index is its
//! position in that order and its id is `<task>.<llm>.v<V>.<compressor>`, so `--index K` denotes the
//! same cell on every machine that reads the same config.
use crate::error::{io, Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One LLM size of the grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmSize {
    /// Train-crate preset name (e.g. `qwen2-tiny`).
    pub name: String,
    /// N, parameters in billions.
    pub params: f64,
}

/// Names the report's claims refer to (paper §4: reasoning vs fine-detail tasks, QueCC vs query-free).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportNames {
    /// The visual-reasoning task family (α > β expected).
    pub reasoning_task: String,
    /// The fine-detail (OCR-like) task family (relatively larger β expected).
    pub fine_detail_task: String,
    /// The query-conditioned compressor (QueCC).
    pub quecc: String,
    /// The query-free ablation of it.
    pub query_free: String,
}

impl Default for ReportNames {
    fn default() -> Self {
        ReportNames {
            reasoning_task: "sort_of_clevr".into(),
            fine_detail_task: "fine_detail".into(),
            quecc: "quecc".into(),
            query_free: "quecc-noquery".into(),
        }
    }
}

/// The TOML file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: String,
    results_dir: PathBuf,
    steps: u64,
    #[serde(default)]
    seed: u64,
    visual_tokens: Vec<u64>,
    compressors: Vec<String>,
    tasks: Vec<String>,
    llm: Vec<LlmSize>,
    #[serde(default)]
    report: ReportNames,
}

/// A validated sweep config.
#[derive(Debug, Clone)]
pub struct SweepConfig {
    /// The file it was read from (absolute when read with [`SweepConfig::from_path`]).
    pub path: PathBuf,
    /// Sweep name.
    pub name: String,
    /// Results folder (resolved against the config's folder).
    pub results_dir: PathBuf,
    /// Training steps per cell.
    pub steps: u64,
    /// Seed of every cell.
    pub seed: u64,
    /// V values.
    pub visual_tokens: Vec<u64>,
    /// Compressor names.
    pub compressors: Vec<String>,
    /// Task names.
    pub tasks: Vec<String>,
    /// LLM sizes.
    pub llms: Vec<LlmSize>,
    /// Names used by the report.
    pub report: ReportNames,
}

/// One cell of the grid: what to train and evaluate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Position in the expansion order (0-based; the Slurm array index).
    pub index: usize,
    /// Stable id `<task>.<llm>.v<V>.<compressor>` (file name of its result).
    pub id: String,
    /// Task name.
    pub task: String,
    /// LLM preset name.
    pub llm: String,
    /// N in billions.
    pub llm_params: f64,
    /// V, visual tokens after compression.
    pub visual_tokens: u64,
    /// Compressor name.
    pub compressor: String,
    /// Training steps.
    pub steps: u64,
    /// Seed.
    pub seed: u64,
}

fn check_name(file: &str, key: &str, s: &str) -> Result<()> {
    let ok = !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(Error::Config {
            file: file.into(),
            key: key.into(),
            msg: format!("`{s}` must be non-empty and use only letters, digits, `-` and `_` (it is part of file names)"),
        })
    }
}

fn check_unique<T: PartialEq + std::fmt::Debug>(file: &str, key: &str, v: &[T]) -> Result<()> {
    let cfg = |msg: String| Error::Config { file: file.into(), key: key.into(), msg };
    if v.is_empty() {
        return Err(cfg("must list at least one value".into()));
    }
    for (i, a) in v.iter().enumerate() {
        if v[..i].contains(a) {
            return Err(cfg(format!("{a:?} is listed twice")));
        }
    }
    Ok(())
}

impl SweepConfig {
    /// Reads and validates a sweep config.
    ///
    /// Errors: [`Error::Io`] if unreadable; [`Error::Config`] naming the file and key for a TOML syntax
    /// error, a missing or unknown key, an empty or duplicated list, a name unusable in file names, a
    /// non-positive N or V, or zero steps.
    pub fn from_path(path: &Path) -> Result<SweepConfig> {
        let text = std::fs::read_to_string(path).map_err(io(path))?;
        let abs = std::path::absolute(path).map_err(io(path))?;
        Self::from_toml_str(&text, &abs)
    }

    /// Parses config text; `path` names it in errors and anchors a relative `results_dir`.
    /// Same errors as [`SweepConfig::from_path`].
    pub fn from_toml_str(text: &str, path: &Path) -> Result<SweepConfig> {
        let file = path.display().to_string();
        let raw: RawConfig = toml::from_str(text).map_err(|e| Error::Config {
            file: file.clone(),
            key: e.span().map(|s| format!("bytes {}..{}", s.start, s.end)).unwrap_or_else(|| "<file>".into()),
            msg: e.message().to_string(),
        })?;
        let cfg = |key: &str, msg: String| Error::Config { file: file.clone(), key: key.into(), msg };
        check_name(&file, "name", &raw.name)?;
        if raw.steps == 0 {
            return Err(cfg("steps", "must be at least 1".into()));
        }
        check_unique(&file, "visual_tokens", &raw.visual_tokens)?;
        if let Some(v) = raw.visual_tokens.iter().find(|&&v| v == 0) {
            return Err(cfg("visual_tokens", format!("V = {v}: must be at least 1")));
        }
        check_unique(&file, "compressors", &raw.compressors)?;
        check_unique(&file, "tasks", &raw.tasks)?;
        for (i, c) in raw.compressors.iter().enumerate() {
            check_name(&file, &format!("compressors[{i}]"), c)?;
        }
        for (i, t) in raw.tasks.iter().enumerate() {
            check_name(&file, &format!("tasks[{i}]"), t)?;
        }
        check_unique(&file, "llm", &raw.llm.iter().map(|l| &l.name).collect::<Vec<_>>())?;
        for (i, l) in raw.llm.iter().enumerate() {
            check_name(&file, &format!("llm[{i}].name"), &l.name)?;
            if !(l.params.is_finite() && l.params > 0.0) {
                return Err(cfg(&format!("llm[{i}].params"), format!("N = {} billion: must be a positive number", l.params)));
            }
            if let Some(j) = raw.llm[..i].iter().position(|o| o.params == l.params) {
                return Err(cfg(
                    &format!("llm[{i}].params"),
                    format!("N = {} billion is also llm[{j}]'s: the law needs distinct N per size", l.params),
                ));
            }
        }
        let base = path.parent().unwrap_or(Path::new("."));
        Ok(SweepConfig {
            path: path.to_path_buf(),
            name: raw.name,
            results_dir: base.join(&raw.results_dir),
            steps: raw.steps,
            seed: raw.seed,
            visual_tokens: raw.visual_tokens,
            compressors: raw.compressors,
            tasks: raw.tasks,
            llms: raw.llm,
            report: raw.report,
        })
    }

    /// The grid's cells in index order (task, then LLM, then V, then compressor).
    pub fn cells(&self) -> Vec<Cell> {
        let mut out = Vec::new();
        for task in &self.tasks {
            for llm in &self.llms {
                for &v in &self.visual_tokens {
                    for comp in &self.compressors {
                        out.push(Cell {
                            index: out.len(),
                            id: format!("{task}.{}.v{v}.{comp}", llm.name),
                            task: task.clone(),
                            llm: llm.name.clone(),
                            llm_params: llm.params,
                            visual_tokens: v,
                            compressor: comp.clone(),
                            steps: self.steps,
                            seed: self.seed,
                        });
                    }
                }
            }
        }
        out
    }

    /// The cell at `index`. Errors: [`Error::Index`] when out of range.
    pub fn cell(&self, index: usize) -> Result<Cell> {
        let cells = self.cells();
        let n = cells.len();
        cells.into_iter().nth(index).ok_or(Error::Index { file: self.path.display().to_string(), index, cells: n })
    }

    /// `<results_dir>/cells`, where each cell's JSON goes.
    pub fn cells_dir(&self) -> PathBuf {
        self.results_dir.join("cells")
    }

    /// `<results_dir>/aggregate.csv`.
    pub fn aggregate_path(&self) -> PathBuf {
        self.results_dir.join("aggregate.csv")
    }
}

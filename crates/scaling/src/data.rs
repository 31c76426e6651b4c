//! The scores CSV: the one input schema shared by the paper's published numbers (`data/paper/`), a
//! user's own results and the training sweep's aggregate.
//!
//! Columns (header names, any order; unknown columns are ignored):
//! - `llm_params` — N, the LLM's parameter count **in billions** (0.5 = 500 M parameters), > 0;
//! - `visual_tokens` — V, visual tokens the LLM reads per image, a positive integer;
//! - `text_tokens` — Q, text tokens per query (optional, default 0), an integer ≥ 0;
//! - `score` — average downstream score as a fraction in [0, 1], **or** `error` = 1 − score (one of the
//!   two is required; if both are present they must agree to 1e-9);
//! - `task` — task family (optional, default `default`), e.g. `reasoning`, `ocr`;
//! - `compressor` — visual-token compressor (optional), e.g. `tokenpacker`, `quecc`.
//!
//! Source of the schema: the authors' `scaling_law_code/values.py` (N in billions, score fractions).
use crate::error::{Error, Result};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// One measured cell: a VLM with an LLM of N billion parameters reading V visual and Q text tokens,
/// and its average downstream error Y = 1 − score.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Observation {
    /// N, LLM parameters in billions.
    pub llm_params: f64,
    /// V, visual tokens read by the LLM.
    pub visual_tokens: f64,
    /// Q, text tokens per query.
    pub text_tokens: f64,
    /// Y, average downstream error in [0, 1] (1 − score).
    pub error: f64,
    /// Task family.
    pub task: String,
    /// Compressor name, when the CSV has the column.
    pub compressor: Option<String>,
}

/// The observations of one CSV, with the name they were read from (used in error messages).
#[derive(Debug, Clone)]
pub struct Dataset {
    /// File name (or `<embedded paper data>`).
    pub source: String,
    /// All rows, in file order.
    pub rows: Vec<Observation>,
}

/// Largest plausible N in billions: a value above this is almost surely a raw parameter count.
const MAX_BILLIONS: f64 = 1.0e5;

impl Dataset {
    /// Reads and validates a scores CSV from disk.
    ///
    /// Errors: [`Error::Io`] if unreadable; [`Error::Data`] naming file, line and field for a
    /// non-number, NaN/inf, N ≤ 0, V ≤ 0 or non-integer, Q < 0, a score/error outside [0, 1] or a
    /// duplicate cell; [`Error::Dataset`] for a missing column or no rows.
    pub fn from_path(path: &Path) -> Result<Dataset> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.to_path_buf(), source })?;
        Dataset::from_csv_str(&text, &path.display().to_string())
    }

    /// Parses and validates CSV text; `source` names it in errors. Same errors as [`Dataset::from_path`].
    pub fn from_csv_str(text: &str, source: &str) -> Result<Dataset> {
        let ds_err = |msg: String| Error::Dataset { file: source.to_string(), msg };
        let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(text.as_bytes());
        let headers = rdr.headers().map_err(|e| ds_err(format!("cannot read the header: {e}")))?.clone();
        let col = |name: &str| headers.iter().position(|h| h == name);
        let n_col = col("llm_params").ok_or_else(|| ds_err(missing("llm_params", &headers)))?;
        let v_col = col("visual_tokens").ok_or_else(|| ds_err(missing("visual_tokens", &headers)))?;
        let (score_col, error_col) = (col("score"), col("error"));
        if score_col.is_none() && error_col.is_none() {
            return Err(ds_err(missing("score` or `error", &headers)));
        }
        let (q_col, task_col, comp_col) = (col("text_tokens"), col("task"), col("compressor"));

        let mut rows = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for rec in rdr.records() {
            let rec = rec.map_err(|e| {
                let line = e.position().map(|p| p.line() as usize).unwrap_or(0);
                Error::Data { file: source.into(), line, field: "-".into(), msg: format!("malformed CSV record: {e}") }
            })?;
            let line = rec.position().map(|p| p.line() as usize).unwrap_or(0);
            let field_err =
                |field: &str, msg: String| Error::Data { file: source.into(), line, field: field.into(), msg };
            let num = |idx: usize, field: &str| -> Result<f64> {
                let raw = rec.get(idx).unwrap_or("");
                if raw.is_empty() {
                    return Err(field_err(field, "empty value".into()));
                }
                let v: f64 = raw.parse().map_err(|_| field_err(field, format!("`{raw}` is not a number")))?;
                if !v.is_finite() {
                    return Err(field_err(field, format!("`{raw}` is not a finite number")));
                }
                Ok(v)
            };
            let n = num(n_col, "llm_params")?;
            if n <= 0.0 {
                return Err(field_err("llm_params", format!("N must be > 0 (billions of parameters), found {n}")));
            }
            if n > MAX_BILLIONS {
                return Err(field_err(
                    "llm_params",
                    format!("N = {n} billion is implausible: `llm_params` is in billions (0.5 = 500M parameters); was a raw count written?"),
                ));
            }
            let v = num(v_col, "visual_tokens")?;
            if v <= 0.0 || v.fract() != 0.0 {
                return Err(field_err("visual_tokens", format!("V must be a positive integer, found {v}")));
            }
            let q = match q_col {
                Some(i) if !rec.get(i).unwrap_or("").is_empty() => num(i, "text_tokens")?,
                _ => 0.0,
            };
            if q < 0.0 || q.fract() != 0.0 {
                return Err(field_err("text_tokens", format!("Q must be an integer ≥ 0, found {q}")));
            }
            let unit = |idx: usize, field: &str| -> Result<f64> {
                let x = num(idx, field)?;
                if !(0.0..=1.0).contains(&x) {
                    return Err(field_err(field, format!("must be a fraction in [0, 1], found {x}")));
                }
                Ok(x)
            };
            let error = match (score_col, error_col) {
                (Some(s), Some(e)) => {
                    let (s, e) = (unit(s, "score")?, unit(e, "error")?);
                    if (s + e - 1.0).abs() > 1e-9 {
                        return Err(field_err("error", format!("score {s} and error {e} do not add up to 1")));
                    }
                    e
                }
                (Some(s), None) => 1.0 - unit(s, "score")?,
                (None, Some(e)) => unit(e, "error")?,
                (None, None) => unreachable!("checked above"),
            };
            let text = |c: Option<usize>| c.and_then(|i| rec.get(i)).filter(|s| !s.is_empty()).map(str::to_string);
            let task = text(task_col).unwrap_or_else(|| "default".to_string());
            let compressor = text(comp_col);
            let key = format!("{task}|{}|{n}|{v}|{q}", compressor.as_deref().unwrap_or(""));
            if let Some(first) = seen.insert(key, line) {
                return Err(field_err(
                    "llm_params",
                    format!("duplicate cell (task {task}, N {n}, V {v}, Q {q}) first seen on line {first}"),
                ));
            }
            rows.push(Observation { llm_params: n, visual_tokens: v, text_tokens: q, error, task, compressor });
        }
        if rows.is_empty() {
            return Err(ds_err("no data rows".into()));
        }
        Ok(Dataset { source: source.to_string(), rows })
    }

    /// Distinct task names, sorted.
    pub fn tasks(&self) -> Vec<String> {
        self.rows.iter().map(|r| r.task.clone()).collect::<BTreeSet<_>>().into_iter().collect()
    }

    /// The rows of one task (and optionally one compressor).
    ///
    /// With `task = None` the dataset must hold exactly one task. Errors: [`Error::Dataset`] when the
    /// task is absent (listing the tasks present) or when several tasks are present and none was named.
    pub fn select(&self, task: Option<&str>, compressor: Option<&str>) -> Result<Dataset> {
        let tasks = self.tasks();
        let task = match task {
            Some(t) => t.to_string(),
            None if tasks.len() == 1 => tasks[0].clone(),
            None => {
                return Err(Error::Dataset {
                    file: self.source.clone(),
                    msg: format!("several tasks ({}): name one with --task", tasks.join(", ")),
                })
            }
        };
        let rows: Vec<_> = self
            .rows
            .iter()
            .filter(|r| r.task == task && compressor.is_none_or(|c| r.compressor.as_deref() == Some(c)))
            .cloned()
            .collect();
        if rows.is_empty() {
            return Err(Error::Dataset {
                file: self.source.clone(),
                msg: format!(
                    "no rows for task `{task}`{} (tasks present: {})",
                    compressor.map(|c| format!(" and compressor `{c}`")).unwrap_or_default(),
                    tasks.join(", ")
                ),
            });
        }
        Ok(Dataset { source: self.source.clone(), rows })
    }

    /// Distinct N values (billions), ascending.
    pub fn llm_sizes(&self) -> Vec<f64> {
        let mut n: Vec<f64> = self.rows.iter().map(|r| r.llm_params).collect();
        n.sort_by(f64::total_cmp);
        n.dedup();
        n
    }

    /// Writes the rows as CSV in this module's schema (atomically). Errors: [`Error::Io`].
    pub fn write_csv(&self, path: &Path) -> Result<()> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let io = |e: csv::Error| Error::Io { path: path.to_path_buf(), source: std::io::Error::other(e) };
        w.write_record(["llm_params", "visual_tokens", "text_tokens", "error", "task", "compressor"]).map_err(io)?;
        for r in &self.rows {
            w.write_record([
                r.llm_params.to_string(),
                r.visual_tokens.to_string(),
                r.text_tokens.to_string(),
                r.error.to_string(),
                r.task.clone(),
                r.compressor.clone().unwrap_or_default(),
            ])
            .map_err(io)?;
        }
        let bytes = w.into_inner().map_err(|e| Error::Invalid(e.to_string()))?;
        crate::output::write_atomic(path, &bytes)
    }
}

fn missing(name: &str, headers: &csv::StringRecord) -> String {
    format!("missing column `{name}` (header has: {})", headers.iter().collect::<Vec<_>>().join(", "))
}

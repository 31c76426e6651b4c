//! Where `frontier` and `plot` get their law: a fit of data (the embedded paper scores by default), a
//! saved `vlmscale fit --json` report, or explicit parameters.
use super::UsageError;
use anyhow::Result;
use scaling::data::Dataset;
use scaling::fit::{fit, FitOptions, FitReport};
use scaling::law::{Law, LawForm, TokenAxis};
use std::path::PathBuf;

/// What T is, on the command line.
#[derive(Clone, Copy, Debug, clap::ValueEnum, Default)]
pub enum Axis {
    /// T = V (the authors' fitting code).
    #[default]
    V,
    /// T = Q + V (the paper's text).
    #[value(name = "q+v")]
    QPlusV,
}

impl From<Axis> for TokenAxis {
    fn from(a: Axis) -> TokenAxis {
        match a {
            Axis::V => TokenAxis::Visual,
            Axis::QPlusV => TokenAxis::TextPlusVisual,
        }
    }
}

/// Law form, on the command line.
#[derive(Clone, Copy, Debug, clap::ValueEnum, Default)]
pub enum Form {
    /// Y = A·N^-α·T^-β + D (the paper's).
    #[default]
    Multiplicative,
    /// Y = A/N^α + B/T^β + E (Chinchilla's).
    Additive,
}

impl From<Form> for LawForm {
    fn from(f: Form) -> LawForm {
        match f {
            Form::Multiplicative => LawForm::Multiplicative,
            Form::Additive => LawForm::Additive,
        }
    }
}

/// Data-selection flags shared by `fit`, `frontier` and `plot`.
#[derive(clap::Args, Debug, Clone)]
pub struct DataArgs {
    /// Scores CSV (columns llm_params [billions], visual_tokens, text_tokens?, score|error, task?,
    /// compressor?). Default: the paper's published scores, embedded.
    #[arg(long, value_name = "FILE.csv")]
    pub data: Option<PathBuf>,
    /// Task to fit (default: `reasoning` for the embedded data, the only task of a one-task file).
    #[arg(long)]
    pub task: Option<String>,
    /// Keep only rows of this compressor.
    #[arg(long)]
    pub compressor: Option<String>,
    /// Law form.
    #[arg(long, value_enum, default_value_t = Form::Multiplicative)]
    pub form: Form,
    /// What T is: `v` (visual tokens, as the authors' code) or `q+v`.
    #[arg(long = "token-axis", value_enum, default_value_t = Axis::V)]
    pub axis: Axis,
}

impl DataArgs {
    /// Loads the data and selects one task. Returns the selection and the task name.
    pub fn load(&self) -> Result<(Dataset, String)> {
        let (all, default_task) = match &self.data {
            Some(p) => (Dataset::from_path(p)?, None),
            None => (scaling::paper::dataset()?, Some("reasoning")),
        };
        let task = self.task.as_deref().or(default_task);
        let ds = all.select(task, self.compressor.as_deref())?;
        let name = ds.rows[0].task.clone();
        Ok((ds, name))
    }
}

/// Law-source flags of `frontier` and `plot`.
#[derive(clap::Args, Debug, Clone)]
pub struct LawArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// A saved `vlmscale fit --json` report: use its `refined` law.
    #[arg(long, value_name = "FIT.json", conflicts_with_all = ["data", "a", "alpha", "beta", "d"])]
    pub fit: Option<PathBuf>,
    /// Explicit law: A (needs --alpha, --beta, --D too).
    #[arg(long = "A", requires_all = ["alpha", "beta", "d"])]
    pub a: Option<f64>,
    /// Explicit law: α.
    #[arg(long, requires = "a")]
    pub alpha: Option<f64>,
    /// Explicit law: β.
    #[arg(long, requires = "a")]
    pub beta: Option<f64>,
    /// Explicit law: D.
    #[arg(long = "D", requires = "a")]
    pub d: Option<f64>,
}

/// The law, its token axis, and (when it came from data) the data.
pub struct Resolved {
    pub law: Law,
    pub axis: TokenAxis,
    pub data: Option<Dataset>,
    pub origin: String,
}

impl LawArgs {
    /// Resolves the law. Errors (all exit code 2): a missing, unreadable or malformed fit JSON (naming
    /// the file), bad data, parameters outside the fit's constraints ([`Law::check`]: A > 0, α, β,
    /// D ≥ 0, finite) from the command line (naming the flag) or from the fit JSON (naming the file
    /// and field).
    pub fn resolve(&self) -> Result<Resolved> {
        if let Some(path) = &self.fit {
            let text =
                std::fs::read_to_string(path).map_err(|source| scaling::Error::Io { path: path.clone(), source })?;
            let rep: FitReport = serde_json::from_str(&text)
                .map_err(|e| scaling::Error::Json { path: path.clone(), msg: e.to_string() })?;
            rep.law()
                .check()
                .map_err(|msg| scaling::Error::Json { path: path.clone(), msg: format!("`refined`: {msg}") })?;
            return Ok(Resolved {
                law: rep.law(),
                axis: rep.token_axis,
                data: None,
                origin: format!("fit {} (task {})", path.display(), rep.task),
            });
        }
        if let (Some(a), Some(alpha), Some(beta), Some(d)) = (self.a, self.alpha, self.beta, self.d) {
            let law = Law::Multiplicative { a, alpha, beta, d };
            law.check().map_err(|msg| UsageError(format!("--A, --alpha, --beta, --D: {msg}")))?;
            return Ok(Resolved { law, axis: self.data.axis.into(), data: None, origin: "explicit parameters".into() });
        }
        let (ds, task) = self.data.load()?;
        let opts = FitOptions {
            form: self.data.form.into(),
            axis: self.data.axis.into(),
            bootstrap: 0,
            holdout: false,
            ..FitOptions::default()
        };
        let rep = fit(&ds, &task, &opts)?;
        Ok(Resolved {
            law: rep.law(),
            axis: rep.token_axis,
            origin: format!("fit of {} (task {task})", ds.source),
            data: Some(ds),
        })
    }
}

//! Fitting a scaling law to scores: the paper's full grid search, bounded L-BFGS refinement (squared and
//! Huber-on-log losses), bootstrap intervals and leave-one-N-out validation.
pub mod bootstrap;
pub mod cells;
pub mod grid;
pub mod holdout;
pub mod refine;

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::law::{Law, LawForm, TokenAxis};
use bootstrap::Bootstrap;
use cells::Cells;
use grid::{grid_search, GridSpec};
use holdout::{HeldOutCell, Holdout};
use refine::{refine, Constraint, Objective};
use serde::{Deserialize, Serialize};
use std::time::Instant;

/// How to fit.
#[derive(Debug, Clone)]
pub struct FitOptions {
    /// Law form (default: the paper's multiplicative form).
    pub form: LawForm,
    /// What T is (default: V, as the authors' code).
    pub axis: TokenAxis,
    /// The grid (default: the paper's for the multiplicative form, a coarse one for the additive form).
    pub grid: Option<GridSpec>,
    /// How many of the best (α, β) grid cells start L-BFGS runs.
    pub starts: usize,
    /// Bootstrap resamples (0 disables the bootstrap).
    pub bootstrap: usize,
    /// Two-sided confidence level of the bootstrap intervals.
    pub level: f64,
    /// Seed of the bootstrap.
    pub seed: u64,
    /// Whether to run leave-one-N-out validation (needs ≥ 2 distinct N).
    pub holdout: bool,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            form: LawForm::Multiplicative,
            axis: TokenAxis::Visual,
            grid: None,
            starts: 8,
            bootstrap: 200,
            level: 0.95,
            seed: 0,
            holdout: true,
        }
    }
}

/// One fitted parameter set with its quality.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitEntry {
    /// The parameters (`A`, `alpha`, `beta`, `D` for the paper's form) and the `form` tag.
    #[serde(flatten)]
    pub law: Law,
    /// Sum of squared errors on Y over the cells (the paper's loss), error units squared.
    pub loss: f64,
    /// R² on Y.
    pub r2: f64,
    /// α / β (how much faster error moves with N than with T); +∞ when β = 0, which JSON stores as
    /// `null` and reads back as +∞.
    #[serde(deserialize_with = "null_as_infinity")]
    pub alpha_over_beta: f64,
    /// The objective this entry minimised (`grid`, `squared`, `huber_log`).
    pub objective: String,
    /// Value of that objective.
    pub objective_value: f64,
}

/// Reads a JSON number, or `null` as +∞: serde_json writes non-finite floats as `null`, and the
/// ratios stored in a fit report are +∞ when their denominator is 0 (α/β of a β = 0 fit, a relative
/// gap on an observed error of 0).
pub(crate) fn null_as_infinity<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::INFINITY))
}

impl FitEntry {
    fn new(cells: &Cells, law: Law, objective: &str, objective_value: f64) -> FitEntry {
        FitEntry {
            law,
            loss: cells.sse(&law),
            r2: cells.r2(&law),
            alpha_over_beta: law.alpha() / law.beta(),
            objective: objective.to_string(),
            objective_value,
        }
    }
}

/// Everything `vlmscale fit` reports. Serialises to the `--json` output; [`FitReport::law`] gives the law
/// to use downstream (the bounded squared-loss refinement).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FitReport {
    /// Where the data came from.
    pub source: String,
    /// Task fitted.
    pub task: String,
    /// What T is.
    pub token_axis: TokenAxis,
    /// Number of cells fitted.
    pub cells: usize,
    /// Best grid point (`loss` = SSE).
    pub grid: FitEntry,
    /// Grid points evaluated.
    pub grid_points: u64,
    /// Grid wall time, seconds.
    pub grid_seconds: f64,
    /// Parameters whose grid optimum lies on an edge of their grid axis.
    pub grid_boundary: Vec<String>,
    /// Bounded L-BFGS on the squared loss from the best grid points: the law used downstream.
    pub refined: FitEntry,
    /// Bounded L-BFGS on Huber(δ = 1e-3) of the log error (Hoffmann et al.), for comparison;
    /// `None` (JSON `null`) when a cell's error is 0 (a score of exactly 1), whose logarithm is
    /// undefined.
    #[serde(default)]
    pub refined_huber: Option<FitEntry>,
    /// Unbounded L-BFGS on the squared loss, to show the degenerate solution the bounds exclude.
    pub unconstrained: FitEntry,
    /// Which entry downstream commands use (`refined`).
    pub used: String,
    /// The constraints applied, in words.
    pub constraints: String,
    /// Bootstrap intervals (absent when disabled).
    pub bootstrap: Option<Bootstrap>,
    /// Leave-one-N-out validation (absent when disabled or only one N).
    pub leave_one_n_out: Option<Holdout>,
}

impl FitReport {
    /// The law downstream commands use (the bounded squared-loss refinement).
    pub fn law(&self) -> Law {
        self.refined.law
    }
}

const CONSTRAINTS: &str =
    "A > 0 (exp), alpha >= 0, beta >= 0, D >= 0 (softplus reparametrisation; L-BFGS has no bounds)";

/// Grid search then bounded squared refinement: the core fit, without bootstrap or hold-out.
///
/// Errors: [`Error::Dataset`]-style [`Error::Invalid`] when there are fewer cells than parameters.
pub fn fit_law(
    cells: &Cells,
    form: LawForm,
    spec: &GridSpec,
    starts: usize,
) -> Result<(grid::GridResult, refine::Refined)> {
    if cells.len() < form.n_params() {
        return Err(Error::Invalid(format!(
            "{} cells cannot determine the {} parameters of the {:?} law",
            cells.len(),
            form.n_params(),
            form
        )));
    }
    let g = grid_search(cells, form, spec).ok_or_else(|| Error::Invalid("empty grid".into()))?;
    let starts: Vec<Law> = g.ranked.iter().take(starts.max(1)).map(|(_, l)| *l).collect();
    let r = refine(cells, &starts, Objective::Squared, Constraint::Bounded)?;
    Ok((g, r))
}

/// Most cells (rows of one task) [`fit`] accepts. Its cost grows with the cells times the grid's
/// points (≈ 2 ms per cell per grid pass on one core) and again for each bootstrap resample: 20 000
/// cells already take minutes. A sweep has tens to hundreds of cells; more rows usually mean per-item
/// rows that should be averaged per (N, V) cell first.
pub const MAX_FIT_CELLS: usize = 20_000;

/// Fits `ds` (one task) with `opts`.
///
/// Errors: [`Error::Dataset`] when there are fewer cells than parameters, more than
/// [`MAX_FIT_CELLS`], or fewer than two distinct N or T values (the exponents are then
/// unidentifiable); optimiser errors.
pub fn fit(ds: &Dataset, task: &str, opts: &FitOptions) -> Result<FitReport> {
    let cells = Cells::from_dataset(ds, opts.axis);
    let ds_err = |msg: String| Error::Dataset { file: ds.source.clone(), msg };
    if cells.len() > MAX_FIT_CELLS {
        return Err(ds_err(format!(
            "task `{task}` has {} cells, more than the {MAX_FIT_CELLS} a fit accepts (its time grows with cells × grid points × bootstrap resamples): average the rows of each (N, V) cell first",
            cells.len()
        )));
    }
    if cells.len() < opts.form.n_params() {
        return Err(ds_err(format!(
            "task `{task}` has {} cells, fewer than the {} parameters of the law",
            cells.len(),
            opts.form.n_params()
        )));
    }
    let distinct = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v.dedup();
        v.len()
    };
    if distinct(&cells.n) < 2 || distinct(&cells.t) < 2 {
        return Err(ds_err(format!("task `{task}` needs at least two distinct N and two distinct T values")));
    }
    let spec = opts.grid.clone().unwrap_or_else(|| match opts.form {
        LawForm::Multiplicative => GridSpec::paper(),
        LawForm::Additive => GridSpec::additive_default(),
    });
    let t0 = Instant::now();
    let g = grid_search(&cells, opts.form, &spec).ok_or_else(|| Error::Invalid("empty grid".into()))?;
    let grid_seconds = t0.elapsed().as_secs_f64();
    let starts: Vec<Law> = g.ranked.iter().take(opts.starts.max(1)).map(|(_, l)| *l).collect();

    let sq = refine(&cells, &starts, Objective::Squared, Constraint::Bounded)?;
    // The log objective is undefined at an error of 0; the squared fits do not need it.
    let hub = if cells.y.iter().all(|&y| y > 0.0) {
        Some(refine(&cells, &starts, Objective::HOFFMANN, Constraint::Bounded)?)
    } else {
        None
    };
    let unc = refine(&cells, &starts, Objective::Squared, Constraint::None)?;

    // Each resample is refitted from the full-data optimum and the same best grid cells as the fit.
    let boot_starts: Vec<Law> = std::iter::once(sq.law).chain(starts.iter().copied()).collect();
    let bootstrap =
        (opts.bootstrap > 0).then(|| bootstrap::bootstrap(&cells, &boot_starts, opts.bootstrap, opts.level, opts.seed));
    let leave_one_n_out = if opts.holdout { holdout(ds, opts, &spec)? } else { None };

    Ok(FitReport {
        source: ds.source.clone(),
        task: task.to_string(),
        token_axis: opts.axis,
        cells: cells.len(),
        grid: FitEntry::new(&cells, g.law, "grid", g.loss),
        grid_points: g.points,
        grid_seconds,
        grid_boundary: grid::on_boundary(&g.law, &spec),
        refined: FitEntry::new(&cells, sq.law, Objective::Squared.name(), sq.objective),
        refined_huber: hub.map(|h| FitEntry::new(&cells, h.law, Objective::HOFFMANN.name(), h.objective)),
        unconstrained: FitEntry::new(&cells, unc.law, "squared_unbounded", unc.objective),
        used: "refined".into(),
        constraints: CONSTRAINTS.into(),
        bootstrap,
        leave_one_n_out,
    })
}

fn holdout(ds: &Dataset, opts: &FitOptions, spec: &GridSpec) -> Result<Option<Holdout>> {
    let sizes = ds.llm_sizes();
    let Some(&largest) = sizes.last() else { return Ok(None) };
    let train: Vec<_> = ds.rows.iter().filter(|r| r.llm_params != largest).cloned().collect();
    let test: Vec<_> = ds.rows.iter().filter(|r| r.llm_params == largest).cloned().collect();
    let train = Dataset { source: ds.source.clone(), rows: train };
    let cells = Cells::from_dataset(&train, opts.axis);
    let n_distinct = train.llm_sizes().len();
    if n_distinct < 2 || cells.len() < opts.form.n_params() {
        return Ok(None);
    }
    let (_, r) = fit_law(&cells, opts.form, spec, opts.starts)?;
    let held: Vec<HeldOutCell> = test
        .iter()
        .map(|o| HeldOutCell {
            visual_tokens: o.visual_tokens,
            text_tokens: o.text_tokens,
            observed: o.error,
            predicted: r.law.predict(o.llm_params, opts.axis.tokens(o.text_tokens, o.visual_tokens)),
        })
        .collect();
    let abs: Vec<f64> = held.iter().map(|c| (c.predicted - c.observed).abs()).collect();
    let k = held.len() as f64;
    Ok(Some(Holdout {
        held_out_llm_params: largest,
        law: r.law,
        mean_abs_error: abs.iter().sum::<f64>() / k,
        max_abs_error: abs.iter().cloned().fold(0.0, f64::max),
        mean_rel_error: held.iter().zip(&abs).map(|(c, a)| a / c.observed).sum::<f64>() / k,
        cells: held,
    }))
}

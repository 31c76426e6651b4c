//! `vlmscale fit`: the scaling law from scores.
use super::law_source::DataArgs;
use anyhow::Result;
use scaling::fit::{fit, FitEntry, FitOptions, FitReport};
use scaling::law::{Law, TokenAxis};
use std::path::PathBuf;

/// Fit the paper's law to scores: full grid search (the authors' grid, all 5,000,000 points), bounded
/// L-BFGS refinement (squared and Huber-on-log losses), bootstrap intervals and leave-one-N-out.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
    /// Bootstrap resamples of the cells (0: skip).
    #[arg(long, default_value_t = 200)]
    pub bootstrap: usize,
    /// Confidence level of the bootstrap intervals.
    #[arg(long, default_value_t = 0.95)]
    pub level: f64,
    /// Seed of the bootstrap resampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Skip the leave-one-N-out validation.
    #[arg(long)]
    pub no_holdout: bool,
    /// Print one JSON object (grid, refined, refined_huber, unconstrained, bootstrap, leave_one_n_out).
    #[arg(long)]
    pub json: bool,
    /// Also write the JSON report to this file (atomically); `frontier --fit` and `plot --fit` read it.
    #[arg(long, value_name = "FIT.json")]
    pub out: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    if !(a.level > 0.0 && a.level < 1.0) {
        return Err(super::UsageError(format!("--level must be in (0, 1), got {}", a.level)).into());
    }
    let (ds, task) = a.data.load()?;
    let opts = FitOptions {
        form: a.data.form.into(),
        axis: a.data.axis.into(),
        bootstrap: a.bootstrap,
        level: a.level,
        seed: a.seed,
        holdout: !a.no_holdout,
        ..FitOptions::default()
    };
    let rep = fit(&ds, &task, &opts)?;
    let json = serde_json::to_string_pretty(&rep)?;
    if let Some(out) = &a.out {
        scaling::output::write_atomic(out, json.as_bytes())?;
    }
    if a.json {
        println!("{json}");
    } else {
        print!("{}", render(&rep));
    }
    Ok(())
}

fn row(name: &str, e: &FitEntry, note: &str) -> String {
    let p = e.law.params();
    let cols: String = p.iter().map(|x| format!(" {x:>9.4}")).collect();
    format!("{name:<10}{cols}  {:>10.3e} {:>7.4} {:>7.2}   {note}\n", e.loss, e.r2, e.alpha_over_beta)
}

/// The human-readable report.
pub fn render(r: &FitReport) -> String {
    let mut s = String::new();
    let t = match r.token_axis {
        TokenAxis::Visual => "T = V",
        TokenAxis::TextPlusVisual => "T = Q + V",
    };
    let (formula, names) = match r.refined.law {
        Law::Multiplicative { .. } => ("Y = A · N^-α · T^-β + D", ["A", "α", "β", "D", ""]),
        Law::Additive { .. } => ("Y = A / N^α + B / T^β + E", ["A", "α", "B", "β", "E"]),
    };
    s += &format!("vlmscale fit — task `{}`, {} cells from {}\n", r.task, r.cells, r.source);
    s += &format!("law: {formula}   (N in billions of parameters, {t}, Y = 1 − score)\n\n");
    let head: String = names.iter().filter(|n| !n.is_empty()).map(|n| format!(" {n:>9}")).collect();
    s += &format!("{:<10}{head}  {:>10} {:>7} {:>7}\n", "", "SSE", "R²", "α/β");
    s += &row("grid", &r.grid, &format!("full grid: {} points in {:.3} s", r.grid_points, r.grid_seconds));
    s += &row("refined", &r.refined, "L-BFGS, squared loss, bounded  ← used");
    match &r.refined_huber {
        Some(h) => {
            s += &row(
                "huber",
                h,
                &format!("L-BFGS, Huber(δ=1e-3) on ln Y, bounded (objective {:.3e})", h.objective_value),
            )
        }
        None => s += "huber      not fitted: a cell has error 0 (score 1.0), whose logarithm is undefined\n",
    }
    s += &row("unbounded", &r.unconstrained, "L-BFGS, squared loss, no bounds (why the bounds)");
    s += &format!("\nbounds: {}\n", r.constraints);
    if !r.grid_boundary.is_empty() {
        s += &format!(
            "note: the grid optimum sits on the edge of the grid for {} (refinement moves past it)\n",
            r.grid_boundary.join(", ")
        );
    }
    if let Some(b) = &r.bootstrap {
        s += &format!(
            "\nbootstrap {:.0}% intervals ({} resamples of the cells, seed {}):\n",
            b.level * 100.0,
            b.samples,
            b.seed
        );
        for (k, [lo, hi]) in &b.intervals {
            s += &format!("  {k:<16} [{lo:.4}, {hi:.4}]\n");
        }
    }
    if let Some(h) = &r.leave_one_n_out {
        s += &format!(
            "\nleave-one-N-out: fitted without N = {}B (α = {:.4}, β = {:.4}), predicting its {} cells:\n  mean |error| {:.4} ({:.2} % of the observed error), max |error| {:.4}\n",
            h.held_out_llm_params, h.law.alpha(), h.law.beta(), h.cells.len(), h.mean_abs_error, h.mean_rel_error * 100.0, h.max_abs_error
        );
    }
    s += &format!(
        "\nerror moves {:.1}× faster with N than with T (α/β); the paper reports α = {}, β = {} for visual reasoning.\n",
        r.refined.alpha_over_beta, scaling::paper::PAPER_ALPHA, scaling::paper::PAPER_BETA
    );
    s
}

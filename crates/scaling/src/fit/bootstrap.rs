//! Bootstrap confidence intervals: resample the cells with replacement, refit (bounded L-BFGS on the
//! squared loss from the full-data optimum and the best grid cells, as the full fit starts), take
//! percentile intervals.
use super::cells::Cells;
use super::refine::{refine, Constraint, Objective};
use crate::law::Law;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Percentile bootstrap intervals for every parameter and for α/β.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Bootstrap {
    /// Resamples that produced a fit.
    pub samples: usize,
    /// Two-sided level, e.g. 0.95.
    pub level: f64,
    /// Seed of the resampling (ChaCha8).
    pub seed: u64,
    /// `[low, high]` per parameter name (`A`, `alpha`, `beta`, `D`, …, and `alpha_over_beta`); NaN
    /// (JSON `null`) when no resample gave a finite value (e.g. α/β when every refit has β = 0).
    #[serde(flatten, deserialize_with = "null_as_nan")]
    pub intervals: BTreeMap<String, [f64; 2]>,
    /// The refitted laws, in resample order (not serialised): for intervals of derived quantities,
    /// e.g. a difference between two tasks' β/α.
    #[serde(skip)]
    pub laws: Vec<Law>,
}

/// Reads the intervals, `null` bounds (how serde_json writes NaN) as NaN.
fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<BTreeMap<String, [f64; 2]>, D::Error> {
    let m = BTreeMap::<String, [Option<f64>; 2]>::deserialize(d)?;
    Ok(m.into_iter().map(|(k, [lo, hi])| (k, [lo.unwrap_or(f64::NAN), hi.unwrap_or(f64::NAN)])).collect())
}

/// `q`-quantile of sorted data, linear interpolation (numpy's default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Runs `samples` resamples of `cells` (deterministic in `seed`), refitting from `starts`.
/// Resamples whose refit fails are dropped (counted out of `samples` in the result).
pub fn bootstrap(cells: &Cells, starts: &[Law], samples: usize, level: f64, seed: u64) -> Bootstrap {
    let form = starts[0].form();
    let n = cells.len();
    let fits: Vec<Law> = (0..samples)
        .into_par_iter()
        .filter_map(|k| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(k as u64));
            let idx: Vec<usize> = (0..n).map(|_| rng.random_range(0..n)).collect();
            refine(&cells.subset(&idx), starts, Objective::Squared, Constraint::Bounded).ok().map(|r| r.law)
        })
        .collect();
    let (lo_q, hi_q) = ((1.0 - level) / 2.0, 1.0 - (1.0 - level) / 2.0);
    let mut intervals = BTreeMap::new();
    let interval = |mut v: Vec<f64>| {
        v.retain(|x| x.is_finite());
        v.sort_by(f64::total_cmp);
        [quantile(&v, lo_q), quantile(&v, hi_q)]
    };
    for (i, name) in form.param_names().iter().enumerate() {
        intervals.insert(name.to_string(), interval(fits.iter().map(|l| l.params()[i]).collect()));
    }
    intervals.insert("alpha_over_beta".into(), interval(fits.iter().map(|l| l.alpha() / l.beta()).collect()));
    Bootstrap { samples: fits.len(), level, seed, intervals, laws: fits }
}

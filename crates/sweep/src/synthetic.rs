//! A deterministic **test/demo** runner: no training. Its score comes from a known scaling law plus
//! seeded noise, so the sweep's machinery (parallelism, resumability, Slurm, aggregation, the report's
//! verdicts) can be tested in seconds. Every result it writes says `runner: "synthetic"`.
//!
//! The law is the paper's form Y = A·N^−α·V^−β + D (arXiv 2411.03312 §3), with constants chosen so
//! that the error stays inside (0, 1) from the train presets' N (≈ 2·10⁻⁵ billion) to the paper's
//! (billions): reasoning tasks A = 0.1, α = 0.1, β = 0.02, D = 0.05 (α > β, as the paper finds); a
//! task whose name contains `detail` or `ocr` A = 0.15, α = 0.05, β = 0.045, D = 0.1 (relatively
//! larger β, as for the paper's OCR tasks). A compressor whose name ends in `noquery` multiplies the error by 1 + 0.3/V (the query-free
//! ablation loses most at small V, as in the paper's Table 2).
use crate::error::{Error, Result};
use crate::grid::Cell;
use crate::runner::{CellResult, CellRunner};
use std::collections::BTreeMap;
use std::path::Path;

/// The synthetic runner. `fail` lists cell ids that fail on purpose (tests); `delay` makes each cell
/// take that long (tests that interrupt a sweep).
#[derive(Debug, Clone, Default)]
pub struct SyntheticRunner {
    /// Cell ids that return an error.
    pub fail: Vec<String>,
    /// Sleep per cell.
    pub delay: std::time::Duration,
}

/// The synthetic law's (A, α, β, D) for a task name.
pub fn law_for_task(task: &str) -> (f64, f64, f64, f64) {
    if task.contains("detail") || task.contains("ocr") {
        (0.15, 0.05, 0.045, 0.1)
    } else {
        (0.1, 0.1, 0.02, 0.05)
    }
}

/// SplitMix64 (Steele et al. 2014): a fixed, portable hash for the seeded noise.
fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform noise in [−1, 1) from the cell id and seed (FNV-1a of the id, then SplitMix64).
fn noise(id: &str, seed: u64) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
    }
    let u = splitmix(h ^ splitmix(seed)) >> 11;
    u as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
}

impl CellRunner for SyntheticRunner {
    fn name(&self) -> &str {
        "synthetic"
    }

    fn run(&self, cell: &Cell, _out_dir: &Path) -> Result<CellResult> {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        if self.fail.iter().any(|f| f == &cell.id) {
            return Err(Error::Runner {
                cell: cell.id.clone(),
                msg: "synthetic runner: failure injected for a test".into(),
            });
        }
        let (a, alpha, beta, d) = law_for_task(&cell.task);
        let v = cell.visual_tokens as f64;
        let mut err = a * cell.llm_params.powf(-alpha) * v.powf(-beta) + d;
        if cell.compressor.ends_with("noquery") {
            err *= 1.0 + 0.3 / v;
        }
        err = (err + 0.002 * noise(&cell.id, cell.seed)).clamp(0.0, 1.0);
        let score = 1.0 - err;
        let family_accuracy = if cell.task.contains("detail") {
            BTreeMap::from([("digits".to_string(), score)])
        } else {
            BTreeMap::from([
                ("relational".to_string(), (score - 0.05).clamp(0.0, 1.0)),
                ("non-relational".to_string(), (score + 0.05).clamp(0.0, 1.0)),
            ])
        };
        Ok(CellResult {
            cell_id: cell.id.clone(),
            index: cell.index,
            llm_params: cell.llm_params,
            visual_tokens: cell.visual_tokens,
            text_tokens: if cell.task.contains("detail") { 8.0 } else { 12.0 },
            score,
            task: cell.task.clone(),
            compressor: cell.compressor.clone(),
            family_accuracy,
            wall_seconds: 0.0,
            runner: self.name().into(),
            settings: None,
            details: None,
        })
    }
}

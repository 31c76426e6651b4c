//! The paper's published average scores, embedded (files under `data/paper/`, source: the authors'
//! `scaling_law_code/values.py`), and the paper's reported fit.
use crate::data::Dataset;
use crate::error::Result;

/// Visual-reasoning averages: N ∈ {0.5, 1.8, 4, 7} B × V ∈ {1, 4, 16, 36, 64, 144, 576}, task `reasoning`.
pub const REASONING_CSV: &str = include_str!("../../../data/paper/reasoning.csv");
/// OCR-like averages, same grid, task `ocr`.
pub const OCR_CSV: &str = include_str!("../../../data/paper/ocr.csv");

/// α the paper reports for visual reasoning (abstract and Figure 1).
pub const PAPER_ALPHA: f64 = 0.077;
/// β the paper reports for visual reasoning.
pub const PAPER_BETA: f64 = 0.015;

/// Name used for the embedded data in messages and reports.
pub const SOURCE: &str = "<embedded paper data: data/paper/reasoning.csv + ocr.csv>";

/// Both embedded tables as one dataset (tasks `reasoning` and `ocr`).
///
/// Errors: none in practice (the embedded CSVs are validated by tests); typed for uniformity.
pub fn dataset() -> Result<Dataset> {
    let mut a = Dataset::from_csv_str(REASONING_CSV, SOURCE)?;
    let b = Dataset::from_csv_str(OCR_CSV, SOURCE)?;
    a.rows.extend(b.rows);
    Ok(a)
}

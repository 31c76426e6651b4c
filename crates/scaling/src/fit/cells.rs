//! The fitting data in flat form: N (billions), T (tokens, per the chosen [`TokenAxis`]) and the
//! observed error Y for each cell.
use crate::data::Dataset;
use crate::law::{Law, TokenAxis};

/// Flat arrays of one dataset's cells, ready for the fitters. All three vectors have one entry per cell.
#[derive(Debug, Clone)]
pub struct Cells {
    /// N per cell, billions of parameters.
    pub n: Vec<f64>,
    /// T per cell (V, or Q + V), tokens.
    pub t: Vec<f64>,
    /// Observed error Y = 1 − score per cell.
    pub y: Vec<f64>,
}

impl Cells {
    /// Flattens `ds` with T computed by `axis`.
    pub fn from_dataset(ds: &Dataset, axis: TokenAxis) -> Cells {
        Cells {
            n: ds.rows.iter().map(|r| r.llm_params).collect(),
            t: ds.rows.iter().map(|r| axis.tokens(r.text_tokens, r.visual_tokens)).collect(),
            y: ds.rows.iter().map(|r| r.error).collect(),
        }
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.y.len()
    }

    /// True when there are no cells.
    pub fn is_empty(&self) -> bool {
        self.y.is_empty()
    }

    /// The cells at `idx` (indices may repeat: bootstrap resampling).
    pub fn subset(&self, idx: &[usize]) -> Cells {
        Cells {
            n: idx.iter().map(|&i| self.n[i]).collect(),
            t: idx.iter().map(|&i| self.t[i]).collect(),
            y: idx.iter().map(|&i| self.y[i]).collect(),
        }
    }

    /// Sum of squared errors Σ (law(N, T) − Y)², error units squared.
    pub fn sse(&self, law: &Law) -> f64 {
        (0..self.len()).map(|i| (law.predict(self.n[i], self.t[i]) - self.y[i]).powi(2)).sum()
    }

    /// Coefficient of determination R² = 1 − SSE / Σ (Y − mean Y)².
    pub fn r2(&self, law: &Law) -> f64 {
        let mean = self.y.iter().sum::<f64>() / self.len() as f64;
        let sst: f64 = self.y.iter().map(|y| (y - mean).powi(2)).sum();
        1.0 - self.sse(law) / sst
    }
}

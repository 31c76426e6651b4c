//! Scaling-law forms for a VLM's average downstream error Y as a function of the LLM's parameter count
//! N (billions) and the token count T the LLM reads.
//!
//! - Paper (multiplicative, §3 of the paper; authors' `objective.py` `func_error_fit`):
//!   Y = A · N^−α · T^−β + D.
//! - Chinchilla-style additive (Hoffmann et al. 2022, eq. 2): Y = A / N^α + B / T^β + E.
//!
//! T is configurable ([`TokenAxis`]): the authors' code fits with T = V (visual tokens only); the paper's
//! text writes T = Q + V.
use serde::{Deserialize, Serialize};

/// Which tokens count in T.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum TokenAxis {
    /// T = V, visual tokens only (what the authors' fitting code does). The default.
    #[default]
    #[serde(rename = "V")]
    Visual,
    /// T = Q + V, text plus visual tokens (what the paper's text writes).
    #[serde(rename = "Q+V")]
    TextPlusVisual,
}

impl TokenAxis {
    /// T for a query with Q text and V visual tokens (token counts, unitless).
    pub fn tokens(self, q: f64, v: f64) -> f64 {
        match self {
            TokenAxis::Visual => v,
            TokenAxis::TextPlusVisual => q + v,
        }
    }
}

/// The functional form of a law (used to pick a parameterisation when fitting).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LawForm {
    /// Y = A · N^−α · T^−β + D (the paper's form). The default.
    #[default]
    Multiplicative,
    /// Y = A / N^α + B / T^β + E (Chinchilla form).
    Additive,
}

impl LawForm {
    /// Number of free parameters: 4 (A, α, β, D) or 5 (A, α, B, β, E).
    pub fn n_params(self) -> usize {
        match self {
            LawForm::Multiplicative => 4,
            LawForm::Additive => 5,
        }
    }

    /// Parameter names in vector order.
    pub fn param_names(self) -> &'static [&'static str] {
        match self {
            LawForm::Multiplicative => &["A", "alpha", "beta", "D"],
            LawForm::Additive => &["A", "alpha", "B", "beta", "E"],
        }
    }
}

/// A law with its parameters. Serialises with the paper's names (`A`, `alpha`, `beta`, `D`; additive:
/// `A`, `alpha`, `B`, `beta`, `E`) and a `form` tag.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "form", rename_all = "lowercase")]
pub enum Law {
    /// Y = A · N^−α · T^−β + D.
    Multiplicative {
        /// Scale A (error units · billion^α · token^β).
        #[serde(rename = "A")]
        a: f64,
        /// α, exponent of N.
        alpha: f64,
        /// β, exponent of T.
        beta: f64,
        /// D, irreducible error (error units).
        #[serde(rename = "D")]
        d: f64,
    },
    /// Y = A / N^α + B / T^β + E.
    Additive {
        /// A, scale of the N term.
        #[serde(rename = "A")]
        a: f64,
        /// α, exponent of N.
        alpha: f64,
        /// B, scale of the T term.
        #[serde(rename = "B")]
        b: f64,
        /// β, exponent of T.
        beta: f64,
        /// E, irreducible error.
        #[serde(rename = "E")]
        e: f64,
    },
}

impl Law {
    /// Builds a law of `form` from a parameter vector in [`LawForm::param_names`] order.
    /// Panics never; a short vector is a programming error caught by `debug_assert`.
    pub fn from_params(form: LawForm, p: &[f64]) -> Law {
        debug_assert_eq!(p.len(), form.n_params());
        match form {
            LawForm::Multiplicative => Law::Multiplicative { a: p[0], alpha: p[1], beta: p[2], d: p[3] },
            LawForm::Additive => Law::Additive { a: p[0], alpha: p[1], b: p[2], beta: p[3], e: p[4] },
        }
    }

    /// The parameter vector in [`LawForm::param_names`] order.
    pub fn params(&self) -> Vec<f64> {
        match *self {
            Law::Multiplicative { a, alpha, beta, d } => vec![a, alpha, beta, d],
            Law::Additive { a, alpha, b, beta, e } => vec![a, alpha, b, beta, e],
        }
    }

    /// The form of this law.
    pub fn form(&self) -> LawForm {
        match self {
            Law::Multiplicative { .. } => LawForm::Multiplicative,
            Law::Additive { .. } => LawForm::Additive,
        }
    }

    /// α (exponent of N).
    pub fn alpha(&self) -> f64 {
        match *self {
            Law::Multiplicative { alpha, .. } | Law::Additive { alpha, .. } => alpha,
        }
    }

    /// β (exponent of T).
    pub fn beta(&self) -> f64 {
        match *self {
            Law::Multiplicative { beta, .. } | Law::Additive { beta, .. } => beta,
        }
    }

    /// Checks the parameters against the constraints the fit imposes (multiplicative: A > 0, α ≥ 0,
    /// β ≥ 0, D ≥ 0; additive: A > 0, B > 0, α ≥ 0, β ≥ 0, E ≥ 0), all finite: a law outside them
    /// predicts negative or growing errors.
    ///
    /// Errors: a message naming the first offending parameter (its serialised name) and its value.
    pub fn check(&self) -> std::result::Result<(), String> {
        let names = self.form().param_names();
        for (name, v) in names.iter().zip(self.params()) {
            let positive = matches!(*name, "A" | "B");
            let ok = v.is_finite() && if positive { v > 0.0 } else { v >= 0.0 };
            if !ok {
                let want = if positive { "a finite number > 0" } else { "a finite number ≥ 0" };
                return Err(format!("law parameter {name} = {v}: must be {want}"));
            }
        }
        Ok(())
    }

    /// Predicted error Y for an LLM of `n` billion parameters reading `t` tokens (T per [`TokenAxis`]).
    pub fn predict(&self, n: f64, t: f64) -> f64 {
        match *self {
            Law::Multiplicative { a, alpha, beta, d } => a * n.powf(-alpha) * t.powf(-beta) + d,
            Law::Additive { a, alpha, b, beta, e } => a * n.powf(-alpha) + b * t.powf(-beta) + e,
        }
    }
}

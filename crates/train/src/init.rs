//! Seeded weight initialisation. candle's CPU backend cannot be seeded (`set_seed` is unsupported), so
//! the random values a `VarMap` draws when modules are built are replaced here, deterministically from
//! a seed, following HF `PreTrainedModel._init_weights` (Qwen2/CLIP): every weight with ≥ 2 dimensions
//! (Linear, Embedding, Conv) and CLIP's `class_embedding` ~ N(0, 0.02²) (`initializer_range` 0.02);
//! other 1-D tensors keep a constant init (norm weights 1, biases 0) and randomly initialised biases
//! become 0.
use candle_core::Tensor;
use candle_nn::VarMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Error, Result};

/// Standard deviation of the normal initialisation (HF `initializer_range`).
pub const INITIALIZER_RANGE: f64 = 0.02;

/// Re-initialises every variable of `varmap` (visited in name order) from `seed` with
/// [`INITIALIZER_RANGE`]. Errors: tensor ops.
pub fn reinit(varmap: &VarMap, seed: u64) -> Result<()> {
    reinit_with_std(varmap, seed, INITIALIZER_RANGE)
}

/// [`reinit`] with weights ~ N(0, `sigma`²) instead of HF's 0.02. Errors: `sigma` not finite and > 0,
/// tensor ops.
pub fn reinit_with_std(varmap: &VarMap, seed: u64, sigma: f64) -> Result<()> {
    if !(sigma.is_finite() && sigma > 0.0) {
        return Err(Error::config("init_std", format!("must be finite and > 0, got {sigma}")));
    }
    let data = varmap.data().lock().map_err(|_| Error::config("varmap", "poisoned lock"))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for name in names {
        let var = &data[name];
        let t = var.as_tensor();
        let n = t.elem_count();
        let normal = t.rank() >= 2 || name.ends_with("class_embedding");
        let values: Vec<f64> = if normal {
            (0..n)
                .map(|_| {
                    // Box–Muller.
                    let u1: f64 = rng.random::<f64>().max(1e-300);
                    let u2: f64 = rng.random::<f64>();
                    sigma * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
                })
                .collect()
        } else {
            let v: Vec<f64> = t.flatten_all()?.to_dtype(candle_core::DType::F64)?.to_vec1()?;
            if v.iter().all(|&x| x == v[0]) {
                continue;
            }
            vec![0.0; n]
        };
        var.set(&Tensor::from_vec(values, t.shape(), t.device())?.to_dtype(t.dtype())?)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn sample_std(sigma: f64) -> f64 {
        let varmap = VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let _ = candle_nn::linear(128, 128, vb.pp("w")).unwrap();
        reinit_with_std(&varmap, 7, sigma).unwrap();
        let w: Vec<f32> = varmap
            .get((128, 128), "w.weight", candle_nn::Init::Const(0.0), DType::F32, &Device::Cpu)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        let n = w.len() as f64;
        let mean = w.iter().map(|&x| x as f64).sum::<f64>() / n;
        (w.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n).sqrt()
    }

    /// The sample standard deviation of 16 384 draws is within 3 % of the requested one (its
    /// sampling error is ≈ 0.6 %), for HF's 0.02 and for a larger value.
    #[test]
    fn weights_have_the_requested_std() {
        for sigma in [INITIALIZER_RANGE, 0.125] {
            let s = sample_std(sigma);
            assert!((s / sigma - 1.0).abs() < 0.03, "sigma {sigma}: sample std {s}");
        }
    }

    #[test]
    fn non_positive_std_is_an_error() {
        let varmap = VarMap::new();
        for bad in [0.0, -0.1, f64::NAN, f64::INFINITY] {
            let e = reinit_with_std(&varmap, 0, bad).unwrap_err().to_string();
            assert!(e.contains("init_std"), "{e}");
        }
    }
}

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

/// Re-initialises every variable of `varmap` (visited in name order) from `seed`. Errors: tensor ops.
pub fn reinit(varmap: &VarMap, seed: u64) -> Result<()> {
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
                    INITIALIZER_RANGE * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
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

//! Seeded random tensors. candle's CPU random number generator cannot be seeded, so tests and
//! benchmarks draw from a ChaCha8 generator of their own and build the tensor with `from_vec`.
use candle_core::{DType, Device, Shape, Tensor};
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::Result;

/// A tensor of `shape` with independent N(0, `std`²) entries drawn from `rng` (in f64, then cast to
/// `dtype`), on `device`.
///
/// Errors: a candle error for a dtype the cast does not support.
pub fn randn(rng: &mut impl Rng, std: f64, shape: impl Into<Shape>, dtype: DType, device: &Device) -> Result<Tensor> {
    let shape: Shape = shape.into();
    let values: Vec<f64> =
        (0..shape.elem_count()).map(|_| std * Distribution::<f64>::sample(&StandardNormal, rng)).collect();
    Ok(Tensor::from_vec(values, shape, device)?.to_dtype(dtype)?)
}

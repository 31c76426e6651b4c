//! `kernels::autograd::quick_gelu` (OpenAI CLIP's activation, HF `QuickGELUActivation`: x·σ(1.702x)) against
//! the formula evaluated in f64, and its backward pass against central finite differences in f64.
use candle_core::{DType, Device, Tensor, Var};

fn formula(x: f64) -> f64 {
    x / (1.0 + (-1.702 * x).exp())
}

#[test]
fn forward_matches_the_formula_in_f32_and_f64() {
    let xs: Vec<f64> = (0..70_001).map(|i| -35.0 + i as f64 * 1e-3).collect();
    for dtype in [DType::F32, DType::F64] {
        let x = Tensor::new(xs.as_slice(), &Device::Cpu).unwrap().to_dtype(dtype).unwrap();
        let y: Vec<f64> = kernels::autograd::quick_gelu(&x).unwrap().to_dtype(DType::F64).unwrap().to_vec1().unwrap();
        let xr: Vec<f64> = x.to_dtype(DType::F64).unwrap().to_vec1().unwrap(); // the values actually fed in
        for (a, &v) in y.iter().zip(&xr) {
            // f32: rounding 1.702·x to f32 moves e^(−1.702x) by up to |1.702x|·ε/2 relative, on top of a
            // few ε for the exp, the division and the product.
            let tol = if dtype == DType::F32 { (4.0 + 1.702 * v.abs()) * f32::EPSILON as f64 } else { 1e-14 };
            let want = formula(v);
            assert!((a - want).abs() <= tol * want.abs().max(1e-3), "{dtype:?} x = {v}: {a} vs {want}");
        }
    }
}

#[test]
fn backward_matches_finite_differences() {
    let xs = [-6.0, -2.5, -1.0, -0.3, 0.0, 0.2, 0.9, 2.0, 5.0];
    let x = Var::new(&xs[..], &Device::Cpu).unwrap();
    let w = Tensor::new(&[0.3, -1.2, 0.7, 2.0, -0.5, 1.1, 0.4, -0.8, 1.5], &Device::Cpu).unwrap();
    let loss = (kernels::autograd::quick_gelu(x.as_tensor()).unwrap() * &w).unwrap().sum_all().unwrap();
    let grad: Vec<f64> = loss.backward().unwrap().get(x.as_tensor()).unwrap().to_vec1().unwrap();
    let wv: Vec<f64> = w.to_vec1().unwrap();
    let h = 1e-6;
    for (i, &x0) in xs.iter().enumerate() {
        let numeric = wv[i] * (formula(x0 + h) - formula(x0 - h)) / (2.0 * h);
        assert!(
            (grad[i] - numeric).abs() <= 1e-7 * numeric.abs().max(1.0),
            "x = {x0}: backward {} vs {numeric}",
            grad[i]
        );
    }
}

#[test]
fn other_dtypes_are_errors() {
    let x = Tensor::zeros(4, DType::BF16, &Device::Cpu).unwrap();
    assert!(kernels::autograd::quick_gelu(&x).is_err());
}

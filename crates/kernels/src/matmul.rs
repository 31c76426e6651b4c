//! The f32 matrix product behind every `Linear` layer and attention product, with a selectable backend.
//!
//! candle's CPU matmul (the `gemm` crate) reaches about 110–125 GFLOP/s on this project's 2-core
//! AVX-512 machine, against ≈ 167 GFLOP/s for MKL. With the cargo feature `openblas` (needs Debian's
//! `libopenblas-dev`), [`MatmulBackend::OpenBlas`] sends f32 CPU products to OpenBLAS's `cblas_sgemm`
//! through a candle custom op, and is the default (environment variable `VLM_MATMUL=candle` or
//! [`set_matmul_backend`] switch back, e.g. to compare). The op's backward pass is candle's matmul (dA = dC·Bᵀ,
//! dB = Aᵀ·dC), so both the fused and the differentiable modes keep their semantics. Other dtypes,
//! other devices and broadcast batch dimensions always go through candle.
use crate::{Error, Result};
use candle_core::{DType, Tensor};
use std::sync::atomic::{AtomicU8, Ordering};

/// Which library computes f32 CPU matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulBackend {
    /// candle's own `Tensor::matmul` (the `gemm` crate).
    Candle,
    /// OpenBLAS `cblas_sgemm` (cargo feature `openblas`).
    OpenBlas,
}

const UNSET: u8 = 0;
const CANDLE: u8 = 1;
const OPENBLAS: u8 = 2;
static BACKEND: AtomicU8 = AtomicU8::new(UNSET);

/// Selects the backend for the whole process.
///
/// Errors: [`Error::Invalid`] when `OpenBlas` is asked for in a build without the `openblas` feature.
pub fn set_matmul_backend(backend: MatmulBackend) -> Result<()> {
    let v = match backend {
        MatmulBackend::Candle => CANDLE,
        MatmulBackend::OpenBlas if cfg!(feature = "openblas") => OPENBLAS,
        MatmulBackend::OpenBlas => {
            return Err(Error::Invalid(
                "matmul backend OpenBLAS needs vlm built with the `openblas` cargo feature".to_string(),
            ))
        }
    };
    BACKEND.store(v, Ordering::Relaxed);
    Ok(())
}

/// The backend in use.
pub fn matmul_backend() -> MatmulBackend {
    match BACKEND.load(Ordering::Relaxed) {
        OPENBLAS => MatmulBackend::OpenBlas,
        CANDLE => MatmulBackend::Candle,
        _ => {
            let candle = std::env::var("VLM_MATMUL").is_ok_and(|v| v.eq_ignore_ascii_case("candle"));
            let v = if cfg!(feature = "openblas") && !candle { OPENBLAS } else { CANDLE };
            BACKEND.store(v, Ordering::Relaxed);
            matmul_backend()
        }
    }
}

/// `a` (…, m, k) · `b` (…, k, n) → (…, m, n), batch dimensions equal (as `Tensor::matmul`).
/// Errors: shape/dtype mismatches (candle's message).
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    #[cfg(feature = "openblas")]
    if matmul_backend() == MatmulBackend::OpenBlas && blas::applies(a, b) {
        return blas::matmul(a, b);
    }
    Ok(a.matmul(b)?)
}

/// `y = x Wᵀ + b` (torch `nn.Linear`): `x` (…, in), `weight` (out, in), `bias` (out) → (…, out).
/// Leading dimensions of `x` are folded into the rows of one product. Errors: shape mismatch.
///
/// A bf16 `weight` with an f32 `x` (weights converted for inference, see
/// `Decoder::convert_weights` in the models crate) goes through [`crate::matmul_bf16`]: f32 in, f32 out.
/// With candle's backend, f32 inputs of at most [`crate::matmul_rows::MAX_ROWS`] rows outside autograd
/// go through [`crate::matmul_rows`].
pub fn linear(x: &Tensor, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    if weight.dtype() == DType::BF16 && x.dtype() == DType::F32 && x.device().is_cpu() {
        return crate::matmul_bf16::linear_bf16(x, weight, bias);
    }
    if matmul_backend() == MatmulBackend::Candle && crate::matmul_rows::applies(x, weight) {
        // Few rows, no autograd: stream the weight once instead of packing it (see matmul_rows).
        let y = crate::matmul_rows::linear_rows(x, weight)?;
        return Ok(match bias {
            Some(b) => y.broadcast_add(b)?,
            None => y,
        });
    }
    let dims = x.dims();
    let w = weight.t()?;
    let y = if dims.len() >= 2 {
        let rows: usize = dims[..dims.len() - 1].iter().product();
        let mut out_dims = dims[..dims.len() - 1].to_vec();
        out_dims.push(weight.dim(0)?);
        matmul(&x.reshape((rows, dims[dims.len() - 1]))?, &w)?.reshape(out_dims)?
    } else {
        x.broadcast_matmul(&w)?
    };
    Ok(match bias {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    })
}

/// [`linear`] with the weight and bias of a `candle_nn::Linear` (the decoder's layers).
/// Errors: shape mismatch.
pub fn nn_linear(x: &Tensor, layer: &candle_nn::Linear) -> Result<Tensor> {
    linear(x, layer.weight(), layer.bias())
}

#[cfg(feature = "openblas")]
mod blas {
    //! `cblas_sgemm` as a candle `CustomOp2`; the backward pass uses candle's matmul.
    use crate::Result;
    use candle_core::{CpuStorage, CustomOp2, DType, Device, Layout, Shape, Tensor};

    const ROW_MAJOR: i32 = 101;
    const NO_TRANS: i32 = 111;
    const TRANS: i32 = 112;

    #[link(name = "openblas")]
    extern "C" {
        fn cblas_sgemm(
            order: i32,
            trans_a: i32,
            trans_b: i32,
            m: i32,
            n: i32,
            k: i32,
            alpha: f32,
            a: *const f32,
            lda: i32,
            b: *const f32,
            ldb: i32,
            beta: f32,
            c: *mut f32,
            ldc: i32,
        );
    }

    /// How a (rows, cols) strided matrix is passed to BLAS: (transposed?, leading dimension).
    fn blas_view(rows: usize, cols: usize, rs: usize, cs: usize) -> Option<(bool, usize)> {
        if cs == 1 || cols == 1 {
            let ld = if rows == 1 { cols } else { rs };
            if ld >= cols.max(1) {
                return Some((false, ld));
            }
        }
        if rs == 1 || rows == 1 {
            let ld = if cols == 1 { rows } else { cs };
            if ld >= rows.max(1) {
                return Some((true, ld));
            }
        }
        None
    }

    fn view_of(t: &Tensor) -> Option<(bool, usize)> {
        let (d, s) = (t.dims(), t.stride());
        let r = d.len();
        blas_view(d[r - 2], d[r - 1], s[r - 2], s[r - 1])
    }

    /// Whether the BLAS path handles this product (f32, CPU, equal batch dims, sizes within `i32`, and
    /// more than one row: for a mat-vec — decode, the LM head — candle's gemv measured 3–4× faster
    /// than OpenBLAS's `sgemm` with m = 1).
    pub(super) fn applies(a: &Tensor, b: &Tensor) -> bool {
        let (da, db) = (a.dims(), b.dims());
        let r = da.len();
        r >= 2
            && db.len() == r
            && matches!(a.device(), Device::Cpu)
            && a.dtype() == DType::F32
            && b.dtype() == DType::F32
            && da[..r - 2] == db[..r - 2]
            && da[r - 1] == db[r - 2]
            && da[r - 2] > 1
            && da.iter().chain(db.iter()).all(|&x| x < i32::MAX as usize)
    }

    pub(super) fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let a = if view_of(a).is_some() { a.clone() } else { a.contiguous()? };
        let b = if view_of(b).is_some() { b.clone() } else { b.contiguous()? };
        Ok(a.apply_op2(&b, Sgemm)?)
    }

    struct Sgemm;

    /// Start offsets of every matrix in the batch dimensions of `l`.
    fn batch_offsets(l: &Layout) -> Vec<usize> {
        let (d, s) = (l.dims(), l.stride());
        let mut offs = vec![l.start_offset()];
        for i in 0..d.len() - 2 {
            offs = offs.iter().flat_map(|&o| (0..d[i]).map(move |j| o + j * s[i])).collect();
        }
        offs
    }

    impl CustomOp2 for Sgemm {
        fn name(&self) -> &'static str {
            "openblas-sgemm"
        }

        fn cpu_fwd(
            &self,
            s1: &CpuStorage,
            l1: &Layout,
            s2: &CpuStorage,
            l2: &Layout,
        ) -> candle_core::Result<(CpuStorage, Shape)> {
            let (a, b) = match (s1, s2) {
                (CpuStorage::F32(a), CpuStorage::F32(b)) => (a, b),
                _ => candle_core::bail!("openblas-sgemm: f32 operands only"),
            };
            let (da, db) = (l1.dims(), l2.dims());
            let r = da.len();
            let (m, k, n) = (da[r - 2], da[r - 1], db[r - 1]);
            let (ta, lda) = blas_view(m, k, l1.stride()[r - 2], l1.stride()[r - 1])
                .ok_or_else(|| candle_core::Error::Msg("openblas-sgemm: lhs layout".into()))?;
            let (tb, ldb) = blas_view(k, n, l2.stride()[r - 2], l2.stride()[r - 1])
                .ok_or_else(|| candle_core::Error::Msg("openblas-sgemm: rhs layout".into()))?;
            let (oa, ob) = (batch_offsets(l1), batch_offsets(l2));
            let mut out = vec![0f32; oa.len() * m * n];
            if m > 0 && n > 0 {
                for (i, (&pa, &pb)) in oa.iter().zip(ob.iter()).enumerate() {
                    // SAFETY: the layouts address valid elements of `a`/`b` (candle guarantees the
                    // strided views fit the storages); `out` holds m·n elements per batch entry.
                    unsafe {
                        cblas_sgemm(
                            ROW_MAJOR,
                            if ta { TRANS } else { NO_TRANS },
                            if tb { TRANS } else { NO_TRANS },
                            m as i32,
                            n as i32,
                            k as i32,
                            1.0,
                            a[pa..].as_ptr(),
                            lda.max(1) as i32,
                            b[pb..].as_ptr(),
                            ldb.max(1) as i32,
                            0.0,
                            out[i * m * n..].as_mut_ptr(),
                            n as i32,
                        );
                    }
                }
            }
            let mut shape = da[..r - 1].to_vec();
            shape.push(n);
            Ok((CpuStorage::F32(out), Shape::from(shape)))
        }

        fn bwd(
            &self,
            a: &Tensor,
            b: &Tensor,
            _res: &Tensor,
            grad: &Tensor,
        ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
            Ok((Some(grad.matmul(&b.t()?)?), Some(a.t()?.matmul(grad)?)))
        }
    }
}

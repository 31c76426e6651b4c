//! Shared plumbing of the fused ops: the f32/f64 element trait, contiguous slice access to candle
//! storages and tensors, and a bounds-checked strided matrix product on slices (the `gemm` crate,
//! which is candle's own CPU matmul).
use candle_core::{CpuStorage, DType, Layout, Shape, Storage, Tensor};

/// The float types the kernels are written for (f32 for training, f64 for gradient checks).
pub(crate) trait Real:
    Copy
    + Send
    + Sync
    + PartialOrd
    + 'static
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
{
    const DTYPE: DType;
    const ZERO: Self;
    const ONE: Self;
    fn from_f64(v: f64) -> Self;
    fn sqrt(self) -> Self;
    fn neg_infinity() -> Self;
    /// `exp` for the kernels' loops: branch-free and vectorisable for f32 ([`super::vmath::exp_f32`]),
    /// exact for f64.
    fn fast_exp(self) -> Self;
    /// `erf` for the kernels' loops: [`super::vmath::erf_f32`] for f32, candle's exact `erf` for f64.
    fn fast_erf(self) -> Self;
    fn slice(s: &CpuStorage) -> Option<&[Self]>;
    fn storage(v: Vec<Self>) -> CpuStorage;
}

macro_rules! real {
    ($t:ty, $dt:expr, $variant:ident, $exp:expr, $erf:expr) => {
        impl Real for $t {
            const DTYPE: DType = $dt;
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            fn neg_infinity() -> Self {
                <$t>::NEG_INFINITY
            }
            #[inline(always)]
            fn fast_exp(self) -> Self {
                $exp(self)
            }
            #[inline(always)]
            fn fast_erf(self) -> Self {
                $erf(self)
            }
            fn slice(s: &CpuStorage) -> Option<&[Self]> {
                match s {
                    CpuStorage::$variant(v) => Some(v),
                    _ => None,
                }
            }
            fn storage(v: Vec<Self>) -> CpuStorage {
                CpuStorage::$variant(v)
            }
        }
    };
}
real!(f32, DType::F32, F32, super::vmath::exp_f32, super::vmath::erf_f32);
real!(f64, DType::F64, F64, f64::exp, candle_core::cpu::erf::erf_f64);

/// The contiguous elements of a custom op's operand. Errors: wrong dtype, non-contiguous layout.
pub(crate) fn operand<'a, T: Real>(s: &'a CpuStorage, l: &Layout, op: &str) -> candle_core::Result<&'a [T]> {
    let all =
        T::slice(s).ok_or_else(|| candle_core::Error::Msg(format!("{op}: operands must all be {:?}", T::DTYPE)))?;
    let (a, b) =
        l.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg(format!("{op}: operand is not contiguous")))?;
    Ok(&all[a..b])
}

/// Runs `f` on the contiguous elements of `t` (made contiguous first if needed).
pub(crate) fn with_slice<T: Real, R>(t: &Tensor, f: impl FnOnce(&[T]) -> R) -> candle_core::Result<R> {
    let t = t.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(s) => Ok(f(operand::<T>(s, layout, "fused op")?)),
        _ => candle_core::bail!("fused ops run on the CPU only"),
    }
}

/// A CPU tensor of `shape` holding `v`.
pub(crate) fn tensor<T: Real>(v: Vec<T>, shape: impl Into<Shape>) -> candle_core::Result<Tensor> {
    let shape = shape.into();
    if v.len() != shape.elem_count() {
        candle_core::bail!("fused op: {} values for shape {shape:?}", v.len());
    }
    Ok(Tensor::from_storage(Storage::Cpu(T::storage(v)), shape, candle_core::op::BackpropOp::none(), false))
}

/// Whether autograd will ask for the gradient of `t` (a variable, or computed from one).
pub(crate) fn needs_grad(t: &Tensor) -> bool {
    t.track_op()
}

/// Products up to this many multiply-adds use [`small_matmul`].
const SMALL: usize = 1 << 12;

super::vmath::simd_fn! {
    /// [`matmul`] as plain loops, for a row-major destination and either a row-major `rhs` (rows of
    /// dst are combinations of rows of rhs) or a `lhs` row and `rhs` column both contiguous along k
    /// (dot products).
    #[allow(clippy::too_many_arguments)]
    fn small_matmul<T: Real>(m: usize, n: usize, k: usize, dst: &mut [T], d: View, lhs: &[T], a: View, rhs: &[T], b: View, scale: T, accumulate: bool) {
        for i in 0..m {
            let out = &mut dst[d.offset + i * d.rs..d.offset + i * d.rs + n];
            if b.cs == 1 && n > 1 {
                if !accumulate {
                    out.iter_mut().for_each(|x| *x = T::ZERO);
                }
                for p in 0..k {
                    let s = scale * lhs[a.offset + i * a.rs + p * a.cs];
                    let row = &rhs[b.offset + p * b.rs..b.offset + p * b.rs + n];
                    for (o, &r) in out.iter_mut().zip(row) {
                        *o += s * r;
                    }
                }
            } else {
                let arow = &lhs[a.offset + i * a.rs..a.offset + i * a.rs + k];
                for (j, o) in out.iter_mut().enumerate() {
                    let col = &rhs[b.offset + j * b.cs..b.offset + j * b.cs + k];
                    let v = scale * super::vmath::dot(arow, col);
                    *o = if accumulate { *o + v } else { v };
                }
            }
        }
    }
}

thread_local! {
    static SERIAL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with the fused kernels single-threaded on this thread (for callers that already run one
/// worker per core, e.g. data-parallel training over parts of a batch).
pub fn serial<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            SERIAL.with(|s| s.set(self.0));
        }
    }
    let _reset = Reset(SERIAL.with(|s| s.replace(true)));
    f()
}

/// Threads for one product: candle's thread count (RAYON_NUM_THREADS, read once), or 1 inside [`serial`].
pub(crate) fn threads() -> usize {
    if SERIAL.with(|s| s.get()) {
        return 1;
    }
    crate::threads::num_threads()
}

/// A strided matrix view: element (i, j) at `offset + i·rs + j·cs` of its slice.
#[derive(Clone, Copy)]
pub(crate) struct View {
    pub offset: usize,
    pub rs: usize,
    pub cs: usize,
}

impl View {
    pub fn rows(offset: usize, rs: usize) -> Self {
        Self { offset, rs, cs: 1 }
    }
    /// The transpose of a row-major view.
    pub fn t(self) -> Self {
        Self { offset: self.offset, rs: self.cs, cs: self.rs }
    }
    fn check(&self, rows: usize, cols: usize, len: usize, what: &str) {
        if rows > 0 && cols > 0 {
            let last = self.offset + (rows - 1) * self.rs + (cols - 1) * self.cs;
            assert!(last < len, "fused op: {what} view out of bounds ({last} ≥ {len})");
        }
    }
}

/// `dst (m×n) = [dst +] scale · lhs (m×k) · rhs (k×n)` on strided slices (`accumulate` adds to dst).
/// Panics if a view leaves its slice (a bug in the caller, never user input).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    d: View,
    lhs: &[T],
    a: View,
    rhs: &[T],
    b: View,
    scale: T,
    accumulate: bool,
) {
    d.check(m, n, dst.len(), "dst");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst[d.offset + i * d.rs + j * d.cs] = T::ZERO;
                }
            }
        }
        return;
    }
    a.check(m, k, lhs.len(), "lhs");
    b.check(k, n, rhs.len(), "rhs");
    // Small products (attention heads, windows): plain loops beat gemm's packing and dispatch.
    if m * n * k <= SMALL && d.cs == 1 && ((b.cs == 1 && n > 1) || (a.cs == 1 && b.rs == 1)) {
        small_matmul(m, n, k, dst, d, lhs, a, rhs, b, scale, accumulate);
        return;
    }
    let par = if m * n * k >= 1 << 18 && threads() > 1 {
        gemm::Parallelism::Rayon(threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the three views were checked to lie inside their slices; dst is exclusively borrowed
    // and cannot alias lhs/rhs (shared borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().add(d.offset),
            d.cs as isize,
            d.rs as isize,
            accumulate,
            lhs.as_ptr().add(a.offset),
            a.cs as isize,
            a.rs as isize,
            rhs.as_ptr().add(b.offset),
            b.cs as isize,
            b.rs as isize,
            T::ONE,
            scale,
            false,
            false,
            false,
            par,
        );
    }
}

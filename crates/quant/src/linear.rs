//! [`QuantLinear`]: an inference `Linear` layer (`y = x·Wᵀ + b`, torch `nn.Linear` layout) whose weight
//! is a [`QuantMatrix`], on candle tensors; and [`WeightFormat`], the storage a model's matrix weights
//! are converted to for inference (`convert_weights` of the models crate).
//!
//! Which product runs, per call with M rows of `x` (leading dimensions folded):
//! - M ≥ [`PANEL_MIN_ROWS`] on a CPU with a bf16 tile kernel: the weight dequantised to bf16 in panels
//!   into the AVX512-BF16 / AMX tile kernel ([`super::matmul_bf16_panels`]) — prefill, where the
//!   product is compute-bound and the tile kernel is several times faster than the int8 dot kernel
//!   (see `bench_quant` in the bench crate);
//! - M ≥ [`kernels::matmul_bf16::WIDEN_MIN_ROWS`] on other CPUs: the weight dequantised to f32 in blocks
//!   into the `gemm` crate's f32 kernels ([`super::matmul_f32_panels`]) — prefill (a 0.5B LLM's 626
//!   tokens on one AVX2 core: 5.1 s in q8_0 and q4_0, against 11.8–15.3 s through the int8 dot kernels);
//! - otherwise: the int8 block dot products of [`super::matmul`] (activation rows quantised to Q8_0 on
//!   the fly, GGML's `vec_dot` scheme) — decode.
use std::sync::Arc;

use candle_core::{DType, Storage, Tensor};
use half::{bf16, f16};

use super::{QuantError, QuantFormat, QuantMatrix, QuantPath};
use kernels::matmul_bf16::{bf16_kernels, Bf16Path};
use kernels::{Error, Result};

/// Rows of `x` from which a product goes through dequantised bf16 panels when this CPU has a bf16
/// tile kernel (AMX or AVX512-BF16); fewer rows use the int8 dot kernel.
pub const PANEL_MIN_ROWS: usize = 16;

/// Storage of a model's matrix weights for inference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    /// A dense candle dtype (f32: the parity path; bf16 with f32 activations: [`kernels::matmul_bf16`]).
    Dense(DType),
    /// GGML blocks ([`QuantFormat`]) with f32 activations: [`QuantLinear`].
    Quant(QuantFormat),
}

impl WeightFormat {
    /// Short name: `f32`, `bf16`, `f16`, … for dense dtypes, `q8_0` / `q4_0` for GGML blocks.
    pub fn name(self) -> String {
        match self {
            WeightFormat::Dense(d) => d.as_str().to_string(),
            WeightFormat::Quant(q) => q.name().to_string(),
        }
    }

    /// Bytes per weight: the dtype's size, or a block's bytes / 32 (Q8_0 1.0625, Q4_0 0.5625).
    pub fn bytes_per_weight(self) -> f64 {
        match self {
            WeightFormat::Dense(d) => d.size_in_bytes() as f64,
            WeightFormat::Quant(q) => q.block_bytes() as f64 / super::QK as f64,
        }
    }
}

impl From<DType> for WeightFormat {
    fn from(d: DType) -> Self {
        WeightFormat::Dense(d)
    }
}

impl From<QuantFormat> for WeightFormat {
    fn from(q: QuantFormat) -> Self {
        WeightFormat::Quant(q)
    }
}

impl std::fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// What runs the quantised products on this CPU, when it is not the fast path: `None` with AVX-512
/// VNNI, else a sentence naming the path the products fall back to (for the CLI to print once).
pub fn fallback_note() -> Option<String> {
    let best = QuantPath::best();
    (best != QuantPath::Avx512Vnni).then(|| {
        format!(
            "note: this CPU lacks AVX-512 VNNI (the fast q8_0/q4_0 path); quantised products run on the {best} path{}",
            if best == QuantPath::Scalar { " (portable, several times slower)" } else { "" }
        )
    })
}

/// `y = x·Wᵀ + b` with `W` (N, K) a [`QuantMatrix`] (shared, cheap to clone) and `b` (N) f32.
#[derive(Debug, Clone)]
pub struct QuantLinear {
    weight: Arc<QuantMatrix>,
    bias: Option<Arc<Vec<f32>>>,
}

impl QuantLinear {
    /// Quantises `weight` ((N, K) f32, bf16 or f16 on the CPU; `name` is the tensor's checkpoint name,
    /// for errors) to `format` with GGML's reference quantisation; `bias` (N), any float dtype, is kept
    /// in f32. Errors: [`QuantError::Width`] naming the tensor when K is not a positive multiple of 32;
    /// [`Error::Shape`] for a bias of the wrong length or a weight that is not 2-D;
    /// [`Error::Invalid`] for another dtype or device.
    pub fn quantize(name: &str, format: QuantFormat, weight: &Tensor, bias: Option<&Tensor>) -> Result<Self> {
        let dims = weight.dims().to_vec();
        let [n, k] = dims[..] else {
            return Err(Error::Shape { name: name.to_string(), expected: vec![0, 0], found: dims });
        };
        if !weight.device().is_cpu() {
            return Err(Error::Invalid(format!("tensor `{name}`: q8_0/q4_0 weights live on the CPU only")));
        }
        if !k.is_multiple_of(super::QK) || k == 0 {
            return Err(QuantError::Width { tensor: name.to_string(), rows: n, k }.into());
        }
        let w = weight.contiguous()?;
        let (storage, layout) = w.storage_and_layout();
        let (a, b) = layout.contiguous_offsets().ok_or_else(|| Error::Invalid(format!("tensor `{name}`: layout")))?;
        let m = match &*storage {
            Storage::Cpu(candle_core::CpuStorage::F32(v)) => QuantMatrix::from_f32(name, format, n, k, &v[a..b])?,
            Storage::Cpu(candle_core::CpuStorage::BF16(v)) => {
                QuantMatrix::from_bf16(name, format, n, k, &v[a..b] as &[bf16])?
            }
            Storage::Cpu(candle_core::CpuStorage::F16(v)) => {
                QuantMatrix::from_f16(name, format, n, k, &v[a..b] as &[f16])?
            }
            _ => {
                return Err(Error::Invalid(format!(
                    "tensor `{name}`: {:?} weights cannot be quantised (f32, bf16 or f16 only)",
                    w.dtype()
                )))
            }
        };
        drop(storage);
        let bias = match bias {
            Some(t) => {
                let v = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
                if v.len() != n {
                    return Err(Error::Shape {
                        name: format!("{name} (bias)"),
                        expected: vec![n],
                        found: vec![v.len()],
                    });
                }
                Some(Arc::new(v))
            }
            None => None,
        };
        Ok(Self { weight: Arc::new(m), bias })
    }

    /// A layer from an existing matrix and bias (N) f32. Errors: [`Error::Shape`] for a bias of the
    /// wrong length.
    pub fn new(weight: QuantMatrix, bias: Option<Vec<f32>>) -> Result<Self> {
        if let Some(b) = &bias {
            if b.len() != weight.rows() {
                return Err(Error::Shape {
                    name: "quantised linear bias".into(),
                    expected: vec![weight.rows()],
                    found: vec![b.len()],
                });
            }
        }
        Ok(Self { weight: Arc::new(weight), bias: bias.map(Arc::new) })
    }

    /// The weight matrix.
    pub fn weight(&self) -> &QuantMatrix {
        &self.weight
    }

    /// Output features N.
    pub fn out_features(&self) -> usize {
        self.weight.rows()
    }

    /// Input features K.
    pub fn in_features(&self) -> usize {
        self.weight.k()
    }

    /// Bytes held: the blocks plus the f32 bias.
    pub fn bytes(&self) -> usize {
        self.weight.bytes() + self.bias.as_ref().map_or(0, |b| 4 * b.len())
    }

    /// `x` (…, K) f32 on the CPU → (…, N) f32 (no backward pass). Errors: [`Error::Shape`] when the
    /// last dimension is not K; [`Error::Invalid`] for another dtype or device, or an `x` tracked by
    /// autograd (quantised weights are for inference only).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (n, k) = (self.weight.rows(), self.weight.k());
        let dims = x.dims().to_vec();
        if dims.is_empty() || dims[dims.len() - 1] != k {
            return Err(Error::Shape { name: "quantised linear input".into(), expected: vec![0, k], found: dims });
        }
        if x.dtype() != DType::F32 || !x.device().is_cpu() {
            return Err(Error::Invalid(format!(
                "q8_0/q4_0 weights need f32 activations on the CPU, got {:?} on {:?}",
                x.dtype(),
                x.device()
            )));
        }
        if x.track_op() {
            return Err(Error::Invalid("q8_0/q4_0 weights are for inference only (no backward pass)".into()));
        }
        let m: usize = dims[..dims.len() - 1].iter().product();
        let x2 = x.reshape((m, k))?.contiguous()?;
        let mut y = vec![0f32; m * n];
        {
            let (storage, layout) = x2.storage_and_layout();
            let (a, b) =
                layout.contiguous_offsets().ok_or_else(|| Error::Invalid("quantised linear: layout".into()))?;
            let Storage::Cpu(candle_core::CpuStorage::F32(xs)) = &*storage else {
                return Err(Error::Invalid("quantised linear: f32 CPU input only".into()));
            };
            let xs = &xs[a..b];
            if uses_panels(m, n, k) {
                super::matmul_bf16_panels(&self.weight, xs, m, &mut y)?;
            } else if uses_f32_panels(m, n, k) {
                super::matmul_f32_panels(&self.weight, xs, m, &mut y)?;
            } else {
                super::matmul(&self.weight, xs, m, &mut y, kernels::threads::num_threads())?;
            }
        }
        if let Some(bias) = &self.bias {
            for row in y.chunks_exact_mut(n) {
                row.iter_mut().zip(bias.iter()).for_each(|(v, b)| *v += b);
            }
        }
        let mut out = dims[..dims.len() - 1].to_vec();
        out.push(n);
        Ok(Tensor::from_vec(y, out, x.device())?)
    }
}

/// Whether an (m, K)·(N, K)ᵀ product goes through dequantised f32 blocks (see the module docs): no bf16
/// tile kernel fits and m ≥ [`kernels::matmul_bf16::WIDEN_MIN_ROWS`].
pub fn uses_f32_panels(m: usize, n: usize, k: usize) -> bool {
    Bf16Path::choose(bf16_kernels(), m, n.min(super::product::BLOCK_ROWS), k) == Bf16Path::Widened
}

/// Whether an (m, K)·(N, K)ᵀ product goes through dequantised bf16 panels (see the module docs).
pub fn uses_panels(m: usize, n: usize, k: usize) -> bool {
    m >= PANEL_MIN_ROWS && Bf16Path::choose(bf16_kernels(), m, n.min(super::product::BLOCK_ROWS), k).rounds_x()
}

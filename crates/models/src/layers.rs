//! Building blocks shared by the vision tower, the compressors and the projector: weight lookup with typed
//! errors, `Linear`, `LayerNorm`, activations, softmax, and `torch.nn.MultiheadAttention`.
//!
//! Every block runs in one of two [`Mode`]s: candle's fused CPU kernels (`layer_norm`,
//! `softmax_last_dim`; fastest, but without a backward pass) or composed elementary ops that candle can
//! differentiate (about 1.5–2× slower for the norm/softmax part; matmuls are the same).
use crate::{Error, Mode, Result};
use candle_core::{DType, Shape, Tensor, D};
use candle_nn::{Init, VarBuilder};
use kernels::matmul::matmul;
use quant::{QuantLinear, WeightFormat};

/// Strips candle's backtrace/context wrappers to find the underlying error.
fn root(err: &candle_core::Error) -> &candle_core::Error {
    match err {
        candle_core::Error::WithBacktrace { inner, .. }
        | candle_core::Error::Context { inner, .. }
        | candle_core::Error::WithPath { inner, .. } => root(inner),
        e => e,
    }
}

/// Fetches tensor `name` under `vb`'s prefix with the expected `shape`.
///
/// Errors: [`Error::MissingTensor`] naming the full tensor name when absent; [`Error::Shape`] naming the
/// tensor with the expected and the stored shape when the shape differs.
pub fn weight(vb: &VarBuilder, shape: impl Into<Shape>, name: &str, init: Init) -> Result<Tensor> {
    let shape: Shape = shape.into();
    let full = if vb.prefix().is_empty() { name.to_string() } else { format!("{}.{name}", vb.prefix()) };
    match vb.get_with_hints(shape.clone(), name, init) {
        Ok(t) => Ok(t),
        Err(e) => match root(&e) {
            candle_core::Error::CannotFindTensor { .. } => {
                Err(Error::MissingTensor { name: full, location: "the weights".to_string() })
            }
            candle_core::Error::UnexpectedShape { expected, got, .. } => {
                Err(Error::Shape { name: full, expected: expected.dims().to_vec(), found: got.dims().to_vec() })
            }
            _ => Err(Error::Candle(e)),
        },
    }
}

/// `y = x Wᵀ + b` with torch `nn.Linear` weight layout: `weight` (out, in), `bias` (out).
/// Input (…, in) → output (…, out).
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
    /// The weight's checkpoint name (`{prefix}.weight`), for errors of a conversion.
    name: String,
    /// The weight as GGML blocks after [`Linear::convert_weights`] to q8_0/q4_0 (then `weight` is an
    /// empty (0, in) placeholder and the bias lives here too).
    quant: Option<QuantLinear>,
}

impl Linear {
    /// Loads `{prefix}.weight` (out, in) and, if `bias`, `{prefix}.bias` (out). Errors: missing tensor or
    /// wrong shape (see [`weight`]).
    pub fn new(in_dim: usize, out_dim: usize, bias: bool, vb: VarBuilder) -> Result<Self> {
        let bound = 1.0 / (in_dim as f64).sqrt();
        let w = weight(&vb, (out_dim, in_dim), "weight", Init::Uniform { lo: -bound, up: bound })?;
        let b = if bias { Some(weight(&vb, out_dim, "bias", Init::Uniform { lo: -bound, up: bound })?) } else { None };
        let name = if vb.prefix().is_empty() { "weight".to_string() } else { format!("{}.weight", vb.prefix()) };
        Ok(Self { weight: w, bias: b, name, quant: None })
    }

    /// Builds from tensors already in memory (weight (out, in), bias (out)).
    pub fn from_tensors(weight: Tensor, bias: Option<Tensor>) -> Self {
        Self { weight, bias, name: "linear weight".to_string(), quant: None }
    }

    /// The same layer with `name` as its weight's name in errors.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Stores the weight in `format` for inference (see [`WeightFormat`]): a dtype (bias unchanged;
    /// bf16 with f32 inputs runs through [`kernels::matmul_bf16`]), or q8_0 / q4_0 GGML blocks
    /// ([`QuantLinear`]: f32 inputs on the CPU; the bias kept in f32). A converted layer has no
    /// backward pass. Errors: candle conversion errors; for q8_0/q4_0, an input width that is not a
    /// multiple of 32 ([`kernels::Error::Quant`] naming the tensor) or a layer already quantised.
    pub fn convert_weights(&mut self, format: impl Into<WeightFormat>) -> Result<()> {
        if self.quant.is_some() {
            return Err(Error::Invalid(format!("tensor `{}` is already stored as GGML blocks", self.name)));
        }
        match format.into() {
            WeightFormat::Dense(dtype) => {
                // Detached: the converted weight must not keep the original alive through candle's graph.
                self.weight = self.weight.to_dtype(dtype)?.detach();
            }
            WeightFormat::Quant(q) => {
                let layer = QuantLinear::quantize(&self.name, q, &self.weight, self.bias.as_ref())?;
                self.weight = Tensor::zeros((0, layer.in_features()), DType::F32, self.weight.device())?;
                self.bias = None;
                self.quant = Some(layer);
            }
        }
        Ok(())
    }

    /// Bytes of the weight and bias as stored (blocks for q8_0/q4_0).
    pub fn weight_bytes(&self) -> usize {
        match &self.quant {
            Some(q) => q.bytes(),
            None => {
                let b = self.bias.as_ref().map_or(0, |b| b.elem_count() * b.dtype().size_in_bytes());
                self.weight.elem_count() * self.weight.dtype().size_in_bytes() + b
            }
        }
    }

    /// (…, in) → (…, out), through the selected [`kernels::matmul`] backend; when autograd tracks the
    /// input or the weights (training), through the fused differentiable op
    /// ([`kernels::autograd::linear`]: no input gradient for frozen inputs).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(q) = &self.quant {
            return q.forward(x);
        }
        let tracked = x.track_op() || self.weight.track_op() || self.bias.as_ref().is_some_and(|b| b.track_op());
        if tracked && kernels::autograd::supports(x) && x.dtype() == self.weight.dtype() {
            return kernels::autograd::linear(x, &self.weight, self.bias.as_ref());
        }
        kernels::matmul::linear(x, &self.weight, self.bias.as_ref())
    }
}

/// `torch.nn.LayerNorm` over the last dimension, with `weight` and `bias` of size `dim`.
#[derive(Debug, Clone)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
    mode: Mode,
}

impl LayerNorm {
    /// Loads `{prefix}.weight` and `{prefix}.bias` (dim). Errors: missing tensor or wrong shape.
    pub fn new(dim: usize, eps: f64, mode: Mode, vb: VarBuilder) -> Result<Self> {
        let w = weight(&vb, dim, "weight", Init::Const(1.0))?;
        let b = weight(&vb, dim, "bias", Init::Const(0.0))?;
        Ok(Self { weight: w, bias: b, eps, mode })
    }

    /// (…, dim) → (…, dim), normalised with biased variance as torch does.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self.mode {
            Mode::Inference => {
                let x = x.contiguous()?;
                Ok(candle_nn::ops::layer_norm(&x, &self.weight, &self.bias, self.eps as f32)?)
            }
            Mode::Differentiable if kernels::autograd::supports(x) && x.dtype() == self.weight.dtype() => {
                kernels::autograd::layer_norm(x, &self.weight, &self.bias, self.eps)
            }
            Mode::Differentiable => {
                let mean = x.mean_keepdim(D::Minus1)?;
                let xc = x.broadcast_sub(&mean)?;
                let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
                let y = xc.broadcast_div(&(var + self.eps)?.sqrt()?)?;
                Ok(y.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)?)
            }
        }
    }
}

/// Softmax over the last dimension, computed in f32 for half-precision inputs as HF does
/// (`softmax(…, dtype=torch.float32)`) and cast back (f64 stays f64, for gradient checks): candle's
/// fused kernel for f32 inference, max-subtracted `exp / sum` ops otherwise (differentiable).
pub fn softmax_last(x: &Tensor, mode: Mode) -> Result<Tensor> {
    let dtype = x.dtype();
    if dtype != DType::F32 && dtype != DType::F64 {
        return Ok(softmax_last(&x.to_dtype(DType::F32)?, mode)?.to_dtype(dtype)?);
    }
    Ok(match mode {
        Mode::Inference if dtype == DType::F32 => candle_nn::ops::softmax_last_dim(&x.contiguous()?)?,
        _ => candle_nn::ops::softmax(x, D::Minus1)?,
    })
}

/// Activation functions by their HF `hidden_act` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `x · σ(1.702 x)` (OpenAI CLIP, HF `quick_gelu`).
    QuickGelu,
    /// Exact erf GELU (`torch.nn.GELU()`, HF `gelu`).
    Gelu,
    /// tanh-approximated GELU (HF `gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
}

impl Activation {
    /// Parses an HF `hidden_act` value; `None` if unsupported.
    pub fn from_hf(name: &str) -> Option<Self> {
        match name {
            "quick_gelu" => Some(Self::QuickGelu),
            "gelu" => Some(Self::Gelu),
            "gelu_new" | "gelu_pytorch_tanh" => Some(Self::GeluTanh),
            _ => None,
        }
    }

    /// Elementwise application.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::QuickGelu if kernels::autograd::supports(x) => kernels::autograd::quick_gelu(x)?,
            Self::QuickGelu => (x * candle_nn::ops::sigmoid(&(x * 1.702)?)?)?,
            Self::Gelu if x.track_op() && kernels::autograd::supports(x) => kernels::autograd::gelu_erf(x)?,
            Self::Gelu => x.gelu_erf()?,
            Self::GeluTanh => x.gelu()?,
        })
    }
}

/// `torch.nn.MultiheadAttention` with packed input projection (`in_proj_weight` (3E, E), `in_proj_bias`
/// (3E)) and `out_proj` (E, E) + bias; no masks, no dropout. Source: PyTorch
/// `torch.nn.functional.multi_head_attention_forward`.
#[derive(Debug, Clone)]
pub struct MultiheadAttention {
    wq: Linear,
    wk: Linear,
    wv: Linear,
    out_proj: Linear,
    num_heads: usize,
    head_dim: usize,
    mode: Mode,
}

impl MultiheadAttention {
    /// Loads `{prefix}.in_proj_weight`, `{prefix}.in_proj_bias`, `{prefix}.out_proj.{weight,bias}`.
    /// Errors: `embed_dim % num_heads != 0` → [`Error::Invalid`]; missing tensor / wrong shape.
    pub fn new(embed_dim: usize, num_heads: usize, mode: Mode, vb: VarBuilder) -> Result<Self> {
        if num_heads == 0 || !embed_dim.is_multiple_of(num_heads) {
            return Err(Error::Invalid(format!(
                "attention width {embed_dim} is not divisible by num_heads {num_heads}"
            )));
        }
        let bound = (6.0 / (4.0 * embed_dim as f64)).sqrt();
        let w = weight(&vb, (3 * embed_dim, embed_dim), "in_proj_weight", Init::Uniform { lo: -bound, up: bound })?;
        let b = weight(&vb, 3 * embed_dim, "in_proj_bias", Init::Const(0.0))?;
        let in_proj =
            if vb.prefix().is_empty() { "in_proj_weight".into() } else { format!("{}.in_proj_weight", vb.prefix()) };
        let part = |i: usize| -> Result<Linear> {
            Ok(Linear::from_tensors(
                w.narrow(0, i * embed_dim, embed_dim)?,
                Some(b.narrow(0, i * embed_dim, embed_dim)?),
            )
            .named(format!("{in_proj} (rows {}..{})", i * embed_dim, (i + 1) * embed_dim)))
        };
        Ok(Self {
            wq: part(0)?,
            wk: part(1)?,
            wv: part(2)?,
            out_proj: Linear::new(embed_dim, embed_dim, true, vb.pp("out_proj"))?,
            num_heads,
            head_dim: embed_dim / num_heads,
            mode,
        })
    }

    /// Stores the q/k/v and output projection weights in `format` for inference (see
    /// [`Linear::convert_weights`]; biases, scores and softmax stay f32). Errors: those of
    /// [`Linear::convert_weights`].
    pub fn convert_weights(&mut self, format: impl Into<WeightFormat>) -> Result<()> {
        let format = format.into();
        for l in [&mut self.wq, &mut self.wk, &mut self.wv, &mut self.out_proj] {
            l.convert_weights(format)?;
        }
        Ok(())
    }

    /// query (N, L, E), key/value (N, S, E) → (N, L, E) (batch-first).
    pub fn forward(&self, query: &Tensor, key: &Tensor, value: &Tensor) -> Result<Tensor> {
        let (n, l, _) = query.dims3()?;
        let (_, s, _) = key.dims3()?;
        let (h, hd) = (self.num_heads, self.head_dim);
        if self.mode == Mode::Differentiable && kernels::autograd::supports(query) {
            let spec = kernels::autograd::AttentionSpec {
                batch: n,
                q_len: l,
                kv_len: s,
                num_heads: h,
                num_kv_heads: h,
                head_dim: hd,
                causal: false,
                scale: 1.0 / (hd as f64).sqrt(),
            };
            let (q, k, v) = (self.wq.forward(query)?, self.wk.forward(key)?, self.wv.forward(value)?);
            let ctx = kernels::autograd::attention(&q, &k, &v, None, spec)?;
            return self.out_proj.forward(&ctx);
        }
        let split = |x: Tensor, len: usize| -> Result<Tensor> {
            Ok(x.reshape((n, len, h, hd))?.transpose(1, 2)?.contiguous()?)
        };
        let q = split((self.wq.forward(query)? * (1.0 / (hd as f64).sqrt()))?, l)?;
        let k = split(self.wk.forward(key)?, s)?;
        let v = split(self.wv.forward(value)?, s)?;
        let scores = matmul(&q, &k.t()?)?;
        let probs = softmax_last(&scores, self.mode)?;
        let ctx = matmul(&probs, &v)?.transpose(1, 2)?.reshape((n, l, h * hd))?;
        self.out_proj.forward(&ctx)
    }
}

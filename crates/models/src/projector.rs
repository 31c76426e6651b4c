//! LLaVA's multimodal projector (`llava/model/multimodal_projector/builder.py`): `linear`
//! (Linear(d → H)) or `mlp{N}x_gelu` (Linear(d → H), then N−1 × [GELU (exact erf, `nn.GELU()`),
//! Linear(H → H)]), mapping (B, V, d) visual tokens to (B, V, H) LLM embeddings.
//!
//! Weight layout of the authors' checkpoints (`model.mm_projector` is one `nn.Sequential`):
//! - no compressor: Linear layers at indices 0, 2, 4, … (`model.mm_projector.0.*`, `.2.*`);
//! - QueCC (inserted at index 0 by `build_token_compressor`): compressor `model.mm_projector.0.*`, Linear
//!   layers at 1, 3, … (`mlp2x_gelu` → `.1.*`, `.3.*`; `linear` → `.1.*`);
//! - TokenPacker (its authors' module): compressor at `model.mm_projector.*`, projector `mlp.0`, `mlp.2`.
//!
//! [`ProjectorLayout`] encodes this.
use crate::layers::{Activation, Linear};
use crate::{Error, Result};
use candle_core::Tensor;
use candle_nn::VarBuilder;

/// Projector type, parsed from LLaVA's `mm_projector_type`: the workspace's one type, defined with
/// the cost model that counts it.
pub use scaling::cost::arch::{ProjectorKind, UnknownProjector};

/// Where the projector's Linear layers live relative to the `mm_projector` prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectorLayout {
    /// `nn.Sequential` without a compressor: Linear layers at 0, 2, 4, ….
    Sequential,
    /// `nn.Sequential` with QueCC at index 0: Linear layers at 1, 3, 5, ….
    SequentialAfterCompressor,
    /// TokenPacker's module: Linear layers at `mlp.0`, `mlp.2`, ….
    TokenPackerMlp,
}

impl ProjectorLayout {
    /// Name (relative to `mm_projector`) of Linear layer `i` (0-based).
    pub fn linear_name(&self, i: usize) -> String {
        match self {
            Self::Sequential => format!("{}", 2 * i),
            Self::SequentialAfterCompressor => format!("{}", 2 * i + 1),
            Self::TokenPackerMlp => format!("mlp.{}", 2 * i),
        }
    }
}

/// The projector: (B, V, d) → (B, V, H).
#[derive(Debug, Clone)]
pub struct Projector {
    layers: Vec<Linear>,
}

impl Projector {
    /// Builds a projector from `vb` at the `mm_projector` prefix (e.g. `model.mm_projector`), with the
    /// layers named as `layout` says. `in_dim` = d (`mm_hidden_size`), `out_dim` = H (LLM `hidden_size`).
    /// Errors: depth 0 ([`Error::Invalid`]), missing tensor, wrong shape (naming the tensor).
    pub fn new(
        kind: ProjectorKind,
        in_dim: usize,
        out_dim: usize,
        layout: ProjectorLayout,
        vb: VarBuilder,
    ) -> Result<Self> {
        if kind.depth() == 0 {
            return Err(Error::Invalid("projector depth must be at least 1".into()));
        }
        let layers = (0..kind.depth())
            .map(|i| {
                let fan_in = if i == 0 { in_dim } else { out_dim };
                Linear::new(fan_in, out_dim, true, vb.pp(layout.linear_name(i)))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { layers })
    }

    /// Stores the Linear layers' weights in `format` for inference ([`Linear::convert_weights`]: bf16
    /// products through [`kernels::matmul_bf16`], q8_0/q4_0 through [`quant::QuantLinear`],
    /// biases f32, no backward pass). Errors: those of [`Linear::convert_weights`].
    pub fn convert_weights(&mut self, format: impl Into<quant::WeightFormat>) -> Result<()> {
        let format = format.into();
        self.layers.iter_mut().try_for_each(|l| l.convert_weights(format))
    }

    /// (…, d) → (…, H). GELU is exact (erf) as `torch.nn.GELU()`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = self.layers[0].forward(x)?;
        for l in &self.layers[1..] {
            x = l.forward(&Activation::Gelu.forward(&x)?)?;
        }
        Ok(x)
    }
}

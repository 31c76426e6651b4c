//! The trainable VLM: compressor → projector → Qwen2 decoder, all built from one `VarBuilder` with the
//! LLaVA checkpoint names (`model.mm_projector.*`, `model.*`, see `engine::checkpoint`), so a `VarMap`
//! saved as safetensors is a checkpoint the engine loads. The vision tower is not part of it: its
//! features are precomputed ([`crate::features`]).
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var, D};
use candle_nn::VarBuilder;
use models::compress::{Compressor, CompressorSpec};
use models::decoder::{Decoder, DecoderConfig};
use models::projector::{Projector, ProjectorKind};
use models::vision::VisionFeatures;
use models::Mode;

use crate::batch::Batch;
use crate::{Error, Result};
pub use scaling::cost::arch::CompressorKind;

/// The compressor named `name` if the trainer can train it (`quecc`, `quecc-noquery`, `tokenpacker`,
/// `avgpool`: every [`CompressorKind`] but `none`). Errors: [`Error::UnknownCompressor`].
pub fn trainable_compressor(name: &str) -> Result<CompressorKind> {
    match CompressorKind::from_name(name) {
        Some(k) if k != CompressorKind::None => Ok(k),
        _ => Err(Error::UnknownCompressor(name.to_string())),
    }
}

/// The engine's spec of compressor `kind` for V tokens from a G×G grid of width d and an LLM of
/// width H. Errors: V not producible from the grid, or `none` ([`engine::Error::Invalid`] listing the
/// allowed V).
pub fn compressor_spec(
    kind: CompressorKind,
    visual_tokens: usize,
    grid: usize,
    dim: usize,
    llm_hidden: usize,
) -> Result<CompressorSpec> {
    let base = match kind {
        CompressorKind::Quecc | CompressorKind::QueccNoQuery => "quecc",
        CompressorKind::Tokenpacker => "tokenpacker",
        CompressorKind::Avgpool => "avgpool",
        CompressorKind::None => return Err(Error::UnknownCompressor(kind.name().to_string())),
    };
    let mut spec = CompressorSpec::from_name(base, visual_tokens, grid, dim, llm_hidden)?;
    if let (CompressorKind::QueccNoQuery, CompressorSpec::Quecc(cfg)) = (kind, &mut spec) {
        cfg.use_query = false;
    }
    Ok(spec)
}

/// Everything that fixes the VLM's shapes.
#[derive(Debug, Clone, PartialEq)]
pub struct VlmArch {
    /// The LLM.
    pub llm: DecoderConfig,
    /// The compressor.
    pub compressor: CompressorKind,
    /// V.
    pub visual_tokens: usize,
    /// Vision width d.
    pub vision_dim: usize,
    /// Patch grid side G.
    pub grid: usize,
}

/// Compressor + `mlp2x_gelu` projector + decoder.
pub struct TrainableVlm {
    /// The architecture.
    pub arch: VlmArch,
    /// The LLM.
    pub decoder: Decoder,
    /// The compressor.
    pub compressor: Box<dyn Compressor>,
    /// The projector (d → H).
    pub projector: Projector,
}

impl TrainableVlm {
    /// Builds the modules from `vb` rooted at the checkpoint's top level (a `VarMap`-backed builder
    /// creates and initialises the weights; a checkpoint's builder loads them). `differentiable`
    /// selects [`Mode::Differentiable`] / [`Mode::Differentiable`] kernels (training) or fused
    /// ones (inference). Errors: V not producible, missing or mis-shaped weights.
    pub fn new(arch: &VlmArch, differentiable: bool, vb: VarBuilder) -> Result<Self> {
        if differentiable {
            retain_freed_memory();
        }
        let h = arch.llm.hidden_size;
        let spec = compressor_spec(arch.compressor, arch.visual_tokens, arch.grid, arch.vision_dim, h)?;
        let op = if differentiable { Mode::Differentiable } else { Mode::Inference };
        let mm = vb.pp("model").pp("mm_projector");
        let compressor = spec.build(arch.grid, arch.vision_dim, op, mm.clone())?;
        let projector =
            Projector::new(ProjectorKind::MlpGelu { depth: 2 }, arch.vision_dim, h, spec.projector_layout(), mm)?;
        let mut decoder = Decoder::new(&arch.llm, vb)?;
        decoder.set_mode(if differentiable { Mode::Differentiable } else { Mode::Inference });
        Ok(Self { arch: arch.clone(), decoder, compressor, projector })
    }

    /// QueCC's query embedding (B, 1, H) of right-padded question ids (B, Lq), detached: the authors
    /// compute it under `torch.no_grad()`. `None` for compressors that take no query.
    pub fn query_embedding(&self, ids: &Tensor, lens: &[usize]) -> Result<Option<Tensor>> {
        if !self.compressor.needs_query() {
            return Ok(None);
        }
        Ok(Some(self.decoder.query_embedding(ids, Some(lens))?.detach()))
    }

    /// Visual embeddings (B, V, H) of `features` (single (B, G², d), multi (B, G², 4d)).
    pub fn visual_embeddings(&self, features: &VisionFeatures, query: Option<&Tensor>) -> Result<Tensor> {
        Ok(self.projector.forward(&self.compressor.compress(features, query)?)?)
    }

    /// Mean cross-entropy (nats per answer token) of the answer tokens of `batch` given the images'
    /// `features` (rows already gathered in batch order).
    /// Errors: shape mismatches between the batch and the features.
    pub fn loss(&self, batch: &Batch, features: &VisionFeatures) -> Result<Tensor> {
        let (b, lt) = batch.text_ids.dims2()?;
        let query = self.query_embedding(&batch.query_ids, &batch.query_lens)?;
        let visual = self.visual_embeddings(features, query.as_ref())?;
        let (vb, v, _) = visual.dims3()?;
        if vb != b || v != batch.visual_tokens {
            return Err(Error::config(
                "visual_tokens",
                format!("batch expects ({b}, {}) visual tokens, compressor produced ({vb}, {v})", batch.visual_tokens),
            ));
        }
        let text = self.decoder.embed_tokens(&batch.text_ids)?;
        let h = text.dim(D::Minus1)?;
        // The LLaVA splice as one gather over [text rows ; visual rows] (see `Batch::splice_index`).
        let rows = Tensor::cat(&[text.reshape((b * lt, h))?, visual.reshape((b * v, h))?], 0)?;
        let embeds = rows.index_select(&batch.splice_index, 0)?.reshape((b, lt + v, h))?;
        let hidden = self.decoder.forward_hidden(&embeds)?;
        let picked = hidden.reshape((b * (lt + v), h))?.index_select(&batch.loss_positions, 0)?;
        let logits = self.decoder.lm_head(&picked.unsqueeze(0)?)?.squeeze(0)?;
        Ok(candle_nn::loss::cross_entropy(&logits, &batch.targets)?)
    }
}

impl TrainableVlm {
    /// The loss of `batch` (as [`Self::loss`]) and its gradients for `vars`, computed data-parallel
    /// on `threads` worker threads: the batch is split into `threads` row ranges, each worker runs
    /// forward and backward on its part (fused kernels single-threaded, [`kernels::autograd::serial`])
    /// with its mean loss weighted by its share of the answer tokens, and the parts' gradients are
    /// summed — the same loss and gradients as one pass over the whole batch, up to summation order.
    /// `threads ≤ 1` (or a one-row batch) is the plain single pass. Returns (loss, gradients).
    /// Errors: as [`Self::loss`]; a worker that panicked ([`Error::Config`]).
    pub fn loss_and_grads(
        &self,
        batch: &Batch,
        features: &VisionFeatures,
        vars: &[(String, Var)],
        threads: usize,
    ) -> Result<(f64, GradStore)> {
        let b = batch.len();
        let parts = threads.clamp(1, b.max(1));
        if parts == 1 {
            let loss = self.loss(batch, features)?;
            let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            return Ok((value, loss.backward()?));
        }
        let total = batch.targets.dim(0)?.max(1) as f64;
        let mut jobs = vec![];
        let mut start = 0;
        for k in 0..parts {
            let len = (b - start) / (parts - k);
            let part = batch.rows(start, len)?;
            let feats = VisionFeatures {
                single: features.single.narrow(0, start, len)?,
                multi: features.multi.as_ref().map(|m| m.narrow(0, start, len)).transpose()?,
                grid: features.grid,
            };
            let weight = part.targets.dim(0)? as f64 / total;
            jobs.push((part, feats, weight));
            start += len;
        }
        let results: Vec<Result<(f64, GradStore)>> = std::thread::scope(|s| {
            let handles: Vec<_> = jobs
                .iter()
                .map(|(part, feats, weight)| {
                    s.spawn(move || {
                        kernels::autograd::serial(|| -> Result<(f64, GradStore)> {
                            if part.targets.dim(0)? == 0 {
                                return Ok((0.0, GradStore::default()));
                            }
                            let loss = (self.loss(part, feats)? * *weight)?;
                            let value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                            Ok((value, loss.backward()?))
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(Error::config("threads", "a data-parallel worker panicked"))))
                .collect()
        });
        let mut loss = 0.0;
        let mut grads: Option<GradStore> = None;
        for r in results {
            let (value, part) = r?;
            loss += value;
            grads = Some(match grads {
                None => part,
                Some(mut acc) => {
                    for (_, var) in vars {
                        if let Some(g) = part.get(var.as_tensor()) {
                            let sum = match acc.remove(var.as_tensor()) {
                                Some(a) => (a + g)?,
                                None => g.clone(),
                            };
                            acc.insert(var.as_tensor(), sum);
                        }
                    }
                    acc
                }
            });
        }
        Ok((loss, grads.unwrap_or_default()))
    }
}

/// Training allocates and frees the same few hundred activation and gradient buffers every step.
/// With glibc's defaults, buffers above the (dynamic) mmap threshold are mapped and unmapped each time
/// and freed heap memory is trimmed back to the OS, so every step pays page faults and kernel page
/// zeroing for its working set (measured: ~75 % fewer page faults and ~20 % less CPU time per step
/// for the `l` preset with the settings below). Called once per process when a differentiable model
/// is built: buffers up to 32 MiB come from the heap (`M_MMAP_THRESHOLD`, glibc's maximum), and up
/// to 1 GiB of freed memory stays in the process (`M_TRIM_THRESHOLD`). No effect on other platforms.
fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            extern "C" {
                fn mallopt(param: i32, value: i32) -> i32;
            }
            const M_TRIM_THRESHOLD: i32 = -1;
            const M_MMAP_THRESHOLD: i32 = -3;
            // SAFETY: mallopt only changes glibc's allocation thresholds and is thread-safe; a
            // rejected value (return 0) leaves the default in place.
            unsafe {
                mallopt(M_MMAP_THRESHOLD, 32 << 20);
                mallopt(M_TRIM_THRESHOLD, 1 << 30);
            }
        });
    }
}

//! `vlmscale generate`: answer one question about one image with a LLaVA-layout checkpoint
//! (QueCC or plain LLaVA-1.5), streaming the answer to stdout, then one timing line.
use anyhow::Result;
use candle_core::{DType, Device};
use engine::model::{AnswerOptions, Vlm};
use std::io::Write;
use std::path::PathBuf;

/// Answer a question about an image. Prints the answer as it is generated, then one line of timings:
/// vision, compressor, query-embedding and prefill ms, time to first token, decode tokens/s and the LLM
/// input length Q + V.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// LLaVA-layout checkpoint directory (config.json with mm_* keys, safetensors, tokenizer.json).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Image file (PNG, JPEG, WebP, BMP, GIF).
    #[arg(long, value_name = "PATH")]
    pub image: PathBuf,
    /// The question.
    #[arg(long, value_name = "TEXT")]
    pub prompt: String,
    /// Local CLIP directory overriding the checkpoint's `mm_vision_tower`.
    #[arg(long, value_name = "DIR")]
    pub vision_tower: Option<PathBuf>,
    /// Maximum new tokens.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 = greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f64,
    /// Nucleus sampling threshold in (0, 1].
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Sampler seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// LLM dtype (vision tower, compressor and projector run in f32).
    #[arg(long, value_enum, default_value_t = Dtype::F32)]
    pub dtype: Dtype,
    /// Matrix weights of the vision tower, compressor, projector and LLM: f32, or bf16 with f32
    /// activations (AMX / AVX512-BF16 / AVX-512 kernels; half the memory; within about 2 % of f32 on
    /// the test models).
    #[arg(long, value_enum, default_value_t = Weights::F32)]
    pub weights: Weights,
}

/// Activation dtype of the LLM (`--dtype`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dtype {
    /// 32-bit float.
    F32,
    /// bfloat16.
    Bf16,
    /// IEEE half.
    F16,
}

impl From<Dtype> for DType {
    fn from(d: Dtype) -> DType {
        match d {
            Dtype::F32 => DType::F32,
            Dtype::Bf16 => DType::BF16,
            Dtype::F16 => DType::F16,
        }
    }
}

/// Storage of the matrix weights (`--weights`).
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Weights {
    /// f32 (the parity path).
    F32,
    /// bf16 matrices with f32 activations.
    Bf16,
}

pub fn run(a: Args) -> Result<()> {
    super::prepare_inference();
    let dtype = DType::from(a.dtype);
    let opts =
        AnswerOptions { max_new_tokens: a.max_new_tokens, temperature: a.temperature, top_p: a.top_p, seed: a.seed };
    let weights = match a.weights {
        Weights::F32 => None,
        Weights::Bf16 if dtype == DType::F32 => Some(DType::BF16),
        Weights::Bf16 => {
            return Err(super::UsageError("--weights bf16 needs --dtype f32 (f32 activations)".into()).into())
        }
    };
    let mut vlm = Vlm::load(&a.model, a.vision_tower.as_deref(), dtype, &Device::Cpu)?;
    if let Some(w) = weights {
        vlm.convert_weights(w)?;
    }
    let stdout = std::io::stdout();
    let ans = vlm.answer(&a.image, &a.prompt, &opts, |piece| {
        let mut out = stdout.lock();
        // A closed stdout (e.g. `| head`) ends generation quietly rather than panicking.
        out.write_all(piece.as_bytes())
            .and_then(|_| out.flush())
            .map_err(|e| engine::Error::Io { path: PathBuf::from("<stdout>"), source: e })
    })?;
    let mut out = stdout.lock();
    writeln!(out)?;
    writeln!(out, "{}", ans.timings)?;
    // On stderr, so that stdout stays the answer and one timing line.
    if let Some(peak) = kernels::memory::peak_rss_bytes() {
        eprintln!("peak resident memory {:.1} MiB", peak as f64 / (1u64 << 20) as f64);
    }
    Ok(())
}

//! `vlmscale generate`: answer one question about one image with a LLaVA-layout checkpoint
//! (QueCC or plain LLaVA-1.5), streaming the answer to stdout, then one timing line; optionally with a
//! training-free visual-token reduction (`--token-reduction METHOD --visual-tokens V`).
use anyhow::Result;
use candle_core::{DType, Device};
use engine::model::{AnswerOptions, LoadOptions, Vlm};
use models::reduction::TokenReduction;
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
    #[arg(long, value_name = "TEXT", required_unless_present = "prompt_file", conflicts_with = "prompt_file")]
    pub prompt: Option<String>,
    /// Read the question from this UTF-8 file instead (for prompts too long for the command line; one
    /// trailing newline is dropped).
    #[arg(long, value_name = "FILE")]
    pub prompt_file: Option<PathBuf>,
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
    /// the test models), or GGML's q8_0 / q4_0 blocks made at load time for the parts named by
    /// --quant-parts (the others bf16; f32 activations; int8 dot products for decode). A matrix
    /// whose width is not a multiple of 32 cannot be quantised: the error names it.
    #[arg(long, value_enum, default_value_t = Weights::F32)]
    pub weights: Weights,
    /// Training-free visual-token reduction for plain LLaVA checkpoints (docs/token-reduction.md):
    /// keep V of the grid's tokens (`--visual-tokens`); prumerge-plus chooses V itself; `trained` (the
    /// checkpoint's own visual tokens) is the same as no reduction. The names `eval` takes.
    #[arg(long, value_enum, value_name = "METHOD")]
    pub token_reduction: Option<eval::reduction::TokenReduction>,
    /// V, visual tokens kept by `--token-reduction` (1 ..= grid², e.g. 576, 64, 16, 4, 1; avgpool: a
    /// square whose side divides the grid).
    #[arg(long, value_name = "V")]
    pub visual_tokens: Option<usize>,
    /// FastV's layer K: layers 0..K see every image token, layers ≥ K the V kept ones.
    #[arg(long, value_name = "K", default_value_t = models::reduction::DEFAULT_FASTV_LAYER)]
    pub fastv_layer: usize,
    /// With --weights q8_0 or q4_0: the parts stored in that format (comma-separated: llm, vision,
    /// compressor, projector, or all); the others are bf16.
    #[arg(long, value_name = "PARTS")]
    pub quant_parts: Option<String>,
}

/// The `--token-reduction` / `--visual-tokens` / `--fastv-layer` request. Errors ([`super::UsageError`],
/// exit 2): `--visual-tokens` without a method; the rest is checked against the model when it answers.
pub fn token_reduction(
    method: Option<eval::reduction::TokenReduction>,
    visual_tokens: Option<usize>,
    fastv_layer: usize,
) -> std::result::Result<Option<TokenReduction>, super::UsageError> {
    match (method, visual_tokens) {
        (None, None) => Ok(None),
        (None, Some(_)) => Err(super::UsageError("--visual-tokens needs --token-reduction METHOD".into())),
        (Some(m), v) => match m.method() {
            // `trained`: the checkpoint's own visual tokens, no training-free reduction.
            None if v.is_none() => Ok(None),
            None => Err(super::UsageError("--visual-tokens needs a training-free --token-reduction METHOD".into())),
            Some(m) => Ok(Some(TokenReduction { fastv_layer, ..TokenReduction::new(m, v) })),
        },
    }
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
    /// GGML Q8_0 blocks (32 int8 weights, one f16 scale: 8.5 bits per weight), f32 activations.
    #[value(name = "q8_0")]
    Q8_0,
    /// GGML Q4_0 blocks (32 4-bit weights, one f16 scale: 4.5 bits per weight), f32 activations.
    #[value(name = "q4_0")]
    Q4_0,
}

impl Weights {
    /// The engine's weight format.
    pub fn format(self) -> engine::model::WeightFormat {
        use engine::model::{QuantFormat, WeightFormat};
        match self {
            Weights::F32 => WeightFormat::Dense(DType::F32),
            Weights::Bf16 => WeightFormat::Dense(DType::BF16),
            Weights::Q8_0 => WeightFormat::Quant(QuantFormat::Q8_0),
            Weights::Q4_0 => WeightFormat::Quant(QuantFormat::Q4_0),
        }
    }

    /// Checks `--weights` against the activation dtype and `--quant-parts` before anything is loaded:
    /// bf16, q8_0 and q4_0 weights need f32 activations; `--quant-parts` needs q8_0 or q4_0. Returns the
    /// parts to quantise. Errors: a usage error naming the meaningless combination.
    pub fn check(self, dtype: DType, quant_parts: Option<&str>) -> Result<engine::model::WeightParts> {
        let name = self.format().name();
        if self != Weights::F32 && dtype != DType::F32 {
            return Err(super::UsageError(format!(
                "--weights {name} needs --dtype f32 (f32 activations); got --dtype {}",
                dtype.as_str()
            ))
            .into());
        }
        match (self, quant_parts) {
            (Weights::Q8_0 | Weights::Q4_0, Some(p)) => engine::model::WeightParts::parse(p)
                .map_err(|e| super::UsageError(format!("--quant-parts: {e}")).into()),
            (_, Some(_)) => {
                Err(super::UsageError(format!("--quant-parts applies to --weights q8_0 or q4_0, not {name}")).into())
            }
            _ => Ok(engine::model::WeightParts::default()),
        }
    }
}

/// The question: `--prompt`, or the text of `--prompt-file` without one trailing newline.
///
/// Errors: an unreadable or non-UTF-8 file (exit code 2, naming it).
fn prompt(a: &Args) -> Result<String> {
    match (&a.prompt, &a.prompt_file) {
        (Some(p), _) => Ok(p.clone()),
        (None, Some(f)) => {
            let text = std::fs::read_to_string(f)
                .map_err(|e| super::UsageError(format!("--prompt-file {}: {e}", f.display())))?;
            let text = text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text);
            Ok(text.to_string())
        }
        (None, None) => Err(super::UsageError("--prompt TEXT or --prompt-file FILE is required".into()).into()),
    }
}

pub fn run(a: Args) -> Result<()> {
    let question = prompt(&a)?;
    super::prepare_inference();
    let dtype = DType::from(a.dtype);
    let reduction = token_reduction(a.token_reduction, a.visual_tokens, a.fastv_layer)?;
    let opts = AnswerOptions {
        max_new_tokens: a.max_new_tokens,
        temperature: a.temperature,
        top_p: a.top_p,
        seed: a.seed,
        token_reduction: reduction,
    };
    let parts = a.weights.check(dtype, a.quant_parts.as_deref())?;
    if matches!(a.weights, Weights::Q8_0 | Weights::Q4_0) {
        if let Some(note) = quant::fallback_note() {
            eprintln!("{note}");
        }
    }
    let load = LoadOptions { token_reduction: reduction.is_some() };
    let mut vlm = Vlm::load_with(&a.model, a.vision_tower.as_deref(), dtype, &Device::Cpu, &load)?;
    if a.weights != Weights::F32 {
        vlm.convert_weights_of(a.weights.format(), parts)?;
    }
    let stdout = std::io::stdout();
    let ans = vlm.answer(&a.image, &question, &opts, |piece| {
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

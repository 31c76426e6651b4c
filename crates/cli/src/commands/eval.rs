//! `vlmscale eval`: two modes, chosen by the input flag.
//!
//! * `--questions Q --image-folder DIR --answers-file A`: answer a LLaVA question file (JSONL, or
//!   ScienceQA's JSON array) with a checkpoint, writing LLaVA's answer lines (crate `eval`,
//!   `generation`); resumable, with a progress bar; then `vlmscale score` scores the file.
//! * `--data HELDOUT.jsonl`: exact-match accuracy per question family on a generated held-out split
//!   (`vlmscale data make`; crate `train`, `eval`).
use super::generate::Weights;
use super::UsageError;
use anyhow::Result;
use candle_core::{DType, Device};
use engine::model::{LoadOptions, Vlm};
use engine::text::Template;
use eval::formats::AnswerWriter;
use eval::generation::{answer_all, load_items, model_id_from_path, Answerer, EvalSummary, DEFAULT_MAX_NEW_TOKENS};
use eval::reduction::TokenReduction;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::path::PathBuf;

/// Evaluate a checkpoint: answer a LLaVA question file (`--questions`), or score a generated held-out
/// split (`--data`).
#[derive(clap::Args, Debug)]
#[command(
    group(clap::ArgGroup::new("input").required(true).args(["data", "questions"])),
    after_help = "\
LLaVA question files (--questions):
  Answers are written as llava/eval/model_vqa_loader.py writes them (ScienceQA's JSON array as
  model_vqa_science.py): {\"question_id\", \"prompt\", \"text\", \"answer_id\", \"model_id\", \"metadata\"},
  greedy, one line per question, flushed as it is written. Rerunning the same command resumes: questions
  already in the answers file are skipped and a torn last line is repaired. A malformed question line, a
  missing image or a prompt longer than the context window is reported with its line number, skipped and
  counted in the summary (exit code 0). Score the answers with `vlmscale score`.

Examples:
  vlmscale eval --model ckpt --questions llava_pope_test.jsonl --image-folder val2014 \\
      --answers-file answers/pope.jsonl
  vlmscale eval --model ckpt --questions llava_test_CQM-A.json --image-folder sqa/test \\
      --answers-file answers/sqa.jsonl --single-pred-prompt
  vlmscale eval --model ckpt --questions gqa.jsonl --image-folder gqa/images --answers-file a.jsonl \\
      --visual-tokens 16                      # 2-D average pooling of a LLaVA-1.5 checkpoint's grid
  for k in 0 1; do vlmscale eval --model ckpt --questions gqa.jsonl --image-folder gqa/images \
      --answers-file a.$k.jsonl --num-chunks 2 --chunk-idx $k & done; wait; cat a.0.jsonl a.1.jsonl > a.jsonl
  vlmscale eval --model ckpt --data heldout.jsonl   # the generated benchmark (exact match)"
)]
pub struct Args {
    /// Checkpoint directory (LLaVA layout).
    #[arg(long, value_name = "DIR")]
    pub model: PathBuf,
    /// Generated held-out LLaVA JSONL from `vlmscale data make` (exact-match mode).
    #[arg(long, value_name = "HELDOUT.jsonl")]
    pub data: Option<PathBuf>,
    /// (--data) Evaluate at most this many questions.
    #[arg(long, requires = "data")]
    pub max_questions: Option<usize>,
    /// (--data) Write the report JSON here (atomically); it is always printed.
    #[arg(long, requires = "data")]
    pub out: Option<PathBuf>,
    /// LLaVA question file: JSONL `{"question_id", "image", "text", ...}` per line, or ScienceQA's JSON
    /// array of conversation items (`llava_test_CQM-A.json`).
    #[arg(long, value_name = "Q.jsonl", requires_all = ["image_folder", "answers_file"])]
    pub questions: Option<PathBuf>,
    /// Folder the questions' `image` paths are relative to.
    #[arg(long, value_name = "DIR", requires = "questions")]
    pub image_folder: Option<PathBuf>,
    /// Answers JSONL to write (appended to and resumed if it exists).
    #[arg(long, value_name = "A.jsonl", requires = "questions")]
    pub answers_file: Option<PathBuf>,
    /// Conversation template (default: by the LLM family, Llama → vicuna_v1, Qwen2 → qwen_1_5).
    #[arg(long, value_enum, requires = "questions")]
    pub conv_mode: Option<ConvMode>,
    /// Visual tokens per image (default: the checkpoint's trained V).
    #[arg(long, value_name = "V", requires = "questions")]
    pub visual_tokens: Option<usize>,
    /// How V is reached: the trained V, or a training-free reduction of a plain checkpoint's patch
    /// tokens (the methods and names of `generate --token-reduction`; default with --visual-tokens: avgpool).
    #[arg(long, value_enum, requires = "questions")]
    pub token_reduction: Option<TokenReduction>,
    /// FastV's layer K (`--token-reduction fastv`): layers 0..K see every image token, layers ≥ K the V kept.
    #[arg(long, value_name = "K", default_value_t = models::reduction::DEFAULT_FASTV_LAYER)]
    pub fastv_layer: usize,
    /// Maximum new tokens per answer (model_vqa_loader.py's default).
    #[arg(long, default_value_t = DEFAULT_MAX_NEW_TOKENS, requires = "questions")]
    pub max_new_tokens: usize,
    /// ScienceQA: append "Answer with the option's letter from the given choices directly." (LLaVA-1.5's
    /// sqa.sh passes --single-pred-prompt).
    #[arg(long, requires = "questions")]
    pub single_pred_prompt: bool,
    /// Draw each answer_id from this seed and the question (reproducible files; an interrupted and
    /// resumed run then writes the same bytes as an uninterrupted one). Default: random ids, as
    /// shortuuid.uuid().
    #[arg(long, value_name = "SEED", requires = "questions")]
    pub answer_id_seed: Option<u64>,
    /// `model_id` written to each line (default: LLaVA's get_model_name_from_path of --model).
    #[arg(long, requires = "questions")]
    pub model_id: Option<String>,
    /// Local CLIP directory overriding the checkpoint's `mm_vision_tower`.
    #[arg(long, value_name = "DIR", requires = "questions")]
    pub vision_tower: Option<PathBuf>,
    /// Matrix weights: f32, or bf16 with f32 activations (as `vlmscale generate --weights`).
    #[arg(long, value_enum, default_value_t = Weights::F32, requires = "questions")]
    pub weights: Weights,
    /// Write the run's summary (counts, skipped lines, timings) as JSON to this file.
    #[arg(long, value_name = "OUT.json", requires = "questions")]
    pub summary_json: Option<PathBuf>,
    /// Split the questions into this many chunks of ⌈questions / N⌉ in file order and answer only
    /// `--chunk-idx` (model_vqa_loader.py's --num-chunks: one process per chunk, each with its own
    /// answers file, concatenated afterwards).
    #[arg(long, value_name = "N", default_value_t = 1, requires = "questions",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub num_chunks: u32,
    /// Which chunk this process answers, 0-based (< --num-chunks).
    #[arg(long, value_name = "K", default_value_t = 0, requires = "questions")]
    pub chunk_idx: u32,
}

/// LLaVA's `--conv-mode` names.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvMode {
    /// LLaVA-1.5 / Vicuna (`conv_vicuna_v1`).
    #[value(name = "vicuna_v1")]
    VicunaV1,
    /// LLaVA-NeXT Qwen-1.5 (ChatML, `conv_qwen`).
    #[value(name = "qwen_1_5")]
    Qwen15,
}

impl From<ConvMode> for Template {
    fn from(c: ConvMode) -> Template {
        match c {
            ConvMode::VicunaV1 => Template::VicunaV1,
            ConvMode::Qwen15 => Template::Qwen15,
        }
    }
}

pub fn run(a: Args) -> Result<()> {
    if let Some(data) = a.data {
        return super::train::eval(super::train::EvalArgs {
            model: a.model,
            data,
            max_questions: a.max_questions,
            out: a.out,
        });
    }
    answer(a)
}

/// The progress bar of an answering run: questions, questions/s, ETA (hidden when stderr is not a
/// terminal).
pub fn progress_bar(total: usize, what: &str) -> ProgressBar {
    progress_bar_to(total, what, ProgressDrawTarget::stderr())
}

fn progress_bar_to(total: usize, what: &str, target: ProgressDrawTarget) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(total as u64), target);
    pb.set_style(
        ProgressStyle::with_template(&format!("{what} {{bar:30}} {{pos}}/{{len}} questions  {{per_sec}}  ETA {{eta}}"))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

/// Prints the run's summary to stderr: counts, each skipped line, speed.
pub fn print_summary(s: &EvalSummary, answers: &std::path::Path) {
    let r = &s.resume;
    if r.torn_bytes_dropped > 0 {
        eprintln!("repaired {}: cut a torn last line ({} bytes)", answers.display(), r.torn_bytes_dropped);
    }
    if r.newline_added {
        eprintln!("repaired {}: added the missing newline of the last answer", answers.display());
    }
    for b in &r.bad_lines {
        eprintln!("warning: {b} (not an answer line; left as is, its question is answered again)");
    }
    for b in &s.bad_lines {
        eprintln!("skipped {b}");
    }
    for b in &s.skipped {
        eprintln!("skipped {b}");
    }
    eprintln!(
        "{} questions: {} answered now, {} already answered, {} skipped (bad line {}, image or prompt {})",
        s.questions + s.bad_lines.len(),
        s.answered,
        s.already_answered,
        s.bad_lines.len() + s.skipped.len(),
        s.bad_lines.len(),
        s.skipped.len()
    );
    if let (Some(qps), Some(over)) = (s.questions_per_second(), s.overhead_ms_per_question) {
        let wait = s.loader_wait_ms_per_question.unwrap_or(0.0);
        eprintln!(
            "{qps:.2} questions/s; per question outside the model {over:.2} ms: {:.2} ms own work (tokenising, writing) + {wait:.2} ms waiting for the image loader (which spent {:.2} ms per image, overlapped with the model)",
            over - wait,
            s.image_ms_per_question.unwrap_or(0.0)
        );
    }
    println!("{}", answers.display());
}

fn answer(a: Args) -> Result<()> {
    let (Some(questions), Some(image_folder), Some(answers)) = (&a.questions, &a.image_folder, &a.answers_file) else {
        return Err(UsageError("--questions needs --image-folder and --answers-file".into()).into());
    };
    if let Some(out) = &a.summary_json {
        super::check_output_file("--summary-json", out)?;
    }
    super::prepare_inference();
    let reduction = match (a.token_reduction, a.visual_tokens) {
        (Some(r), _) => r,
        (None, Some(_)) => TokenReduction::Avgpool,
        (None, None) => TokenReduction::Trained,
    };
    if a.chunk_idx >= a.num_chunks {
        return Err(
            UsageError(format!("--chunk-idx {} must be below --num-chunks {}", a.chunk_idx, a.num_chunks)).into()
        );
    }
    // Inputs first (cheap, and a bad file should not wait for the model).
    let (format, items) = load_items(questions, a.single_pred_prompt)?;
    let items = items.chunk(a.num_chunks as usize, a.chunk_idx as usize);
    // PruMerge+ scores with the vision block after the select layer.
    let load = LoadOptions { token_reduction: reduction.method().is_some() };
    let mut vlm = Vlm::load_with(&a.model, a.vision_tower.as_deref(), DType::F32, &Device::Cpu, &load)?;
    if a.weights == Weights::Bf16 {
        vlm.convert_weights(DType::BF16)?;
    }
    let reducer = reduction.plan_for(&vlm, a.visual_tokens, a.fastv_layer).map_err(UsageError)?;
    let (writer, resume) = AnswerWriter::open(answers)?;
    let mut writer = match a.answer_id_seed {
        Some(seed) => writer.with_keyed_ids(seed),
        None => writer,
    };
    let mut answerer = Answerer::new(&mut vlm, a.conv_mode.map(Template::from), reducer, a.max_new_tokens)?;
    let model_id = a.model_id.clone().unwrap_or_else(|| model_id_from_path(&a.model));
    eprintln!(
        "{}: {} questions, template {}, V = {} ({})",
        questions.display(),
        items.items.len(),
        answerer.template().name(),
        answerer.visual_tokens(),
        reduction.name()
    );
    let mut pb: Option<ProgressBar> = None;
    let summary =
        answer_all(&mut answerer, &items, format, questions, image_folder, &mut writer, &model_id, resume, &mut |p| {
            let bar = pb.get_or_insert_with(|| progress_bar(p.total, "eval"));
            bar.set_position(p.done as u64);
        })?;
    if let Some(bar) = pb {
        bar.finish_and_clear();
    }
    if let Some(out) = &a.summary_json {
        let json = serde_json::to_string_pretty(&summary)?;
        scaling::output::write_atomic(out, format!("{json}\n").as_bytes())?;
    }
    print_summary(&summary, answers);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::progress_bar_to;
    use indicatif::{ProgressDrawTarget, TermLike};
    use std::sync::{Arc, Mutex};

    /// A terminal that keeps the last non-blank text drawn.
    #[derive(Debug, Clone, Default)]
    struct Screen(Arc<Mutex<String>>);

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            120
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(s)
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            // indicatif writes the bar, then pads the rest of the line: keep the bar.
            if !s.trim().is_empty() {
                *self.0.lock().unwrap() = s.to_string();
            }
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// The bar a terminal shows while answering: questions done of the total, the rate in
    /// questions/s and the ETA. Ten questions at about 20 ms each: a rate between 5 and 100 per
    /// second is shown, and an ETA.
    #[test]
    fn progress_bar_shows_questions_rate_and_eta() {
        let screen = Screen::default();
        let pb = progress_bar_to(10, "eval", ProgressDrawTarget::term_like(Box::new(screen.clone())));
        for done in 1..=6 {
            std::thread::sleep(std::time::Duration::from_millis(20));
            pb.set_position(done);
        }
        std::thread::sleep(std::time::Duration::from_millis(120));
        pb.tick();
        let line = screen.0.lock().unwrap().clone();
        assert!(line.starts_with("eval "), "{line:?}");
        assert!(line.contains(" 6/10 questions  "), "{line:?}");
        let rate = line.split("questions").nth(1).unwrap().split_whitespace().next().unwrap();
        let per_s: f64 =
            rate.strip_suffix("/s").unwrap_or_else(|| panic!("no questions/s in {line:?}")).parse().unwrap();
        assert!((5.0..100.0).contains(&per_s), "{per_s} questions/s in {line:?}");
        let eta = line.split("ETA ").nth(1).unwrap_or_else(|| panic!("no ETA in {line:?}"));
        assert!(eta.trim().ends_with('s'), "{line:?}");
    }
}

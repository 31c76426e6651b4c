//! `vlmscale train …` and `vlmscale eval`: small VLMs trained on generated data on this CPU
//! (train crate), with progress bars.
use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
#[allow(clippy::large_enum_variant)] // parsed once per run
pub enum Train {
    /// Pretrain the small CLIP-architecture vision tower on generated Sort-of-CLEVR images (supervised
    /// per-patch object identity and position), then save it as a CLIP directory; it stays frozen.
    Vision(VisionArgs),
    /// Pretrain a Qwen2-architecture LLM size preset on text of the generated world (each scene's
    /// caption in the place of the image, then a question and its answer): the analogue of the
    /// paper's pretrained Qwen-1.5 LLMs, made once per size and shared by every VLM of that size.
    /// Writes an HF Qwen2 directory with a manifest (command, settings, held-out text accuracy,
    /// SHA-256 per file); resumable: rerun the same command to continue.
    Llm(LlmArgs),
    /// Train compressor + projector + a Qwen2-architecture LLM on generated questions, the LLM from
    /// scratch or from a pretrained one (`--llm-init`, with an optional stage 1 that trains only the
    /// compressor and projector); answer tokens as the only targets; checkpoints in the LLaVA layout,
    /// resumable.
    Vlm(VlmArgs),
}

#[derive(clap::Args, Debug)]
pub struct VisionArgs {
    /// Output CLIP directory.
    #[arg(long)]
    pub out: PathBuf,
    /// Optimisation steps.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Seed.
    #[arg(long)]
    pub seed: Option<u64>,
}

#[derive(clap::Args, Debug)]
pub struct LlmArgs {
    /// LLM size preset.
    #[arg(long, value_parser = super::llm_preset_parser())]
    pub llm: String,
    /// Output directory (resumed from if it holds a run with the same settings).
    #[arg(long)]
    pub out: PathBuf,
    /// Optimisation steps (default 20000).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Batch size in documents (default 16).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate (default 1e-3; warm-up 3 %, cosine to 0).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Seed of corpus, initialisation and batch order (default 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Sort-of-CLEVR scenes in the corpus, one question per family each (default 40000; 0 leaves them out, as long as fine-detail or fact scenes remain).
    #[arg(long)]
    pub scenes: Option<usize>,
    /// Fine-detail scenes in the corpus, one question each (default 20000).
    #[arg(long)]
    pub fine_detail_scenes: Option<usize>,
    /// Held-out scenes per task for the text accuracy (default 300).
    #[arg(long)]
    pub eval_scenes: Option<usize>,
    /// Text curriculum: the first N steps ask the short question forms ("shape red"), then the
    /// natural questions (default 0: natural questions only).
    #[arg(long)]
    pub short_question_steps: Option<usize>,
    /// Text curriculum over the number of objects: during the first N steps a Sort-of-CLEVR
    /// document describes only k of its scene's six objects, k = 1 + ⌊5 · step / N⌋, with its
    /// questions answered among them; then all six (default 15 % of `--steps`, 3000 of the default
    /// 20000; 0 = six throughout). Without it the
    /// colour → object lookup stays at the answer prior (docs/training-notes.md).
    #[arg(long)]
    pub object_ramp_steps: Option<usize>,
    /// After the object ramp, keep this fraction of the Sort-of-CLEVR scenes (a seeded draw per
    /// scene) reduced to 1–5 of their objects, so the easy form of every lookup keeps giving gradient
    /// (default 0: all six objects after the ramp). In [0, 1).
    #[arg(long)]
    pub reduced_scenes: Option<f64>,
    /// Questions per training document: a scene's questions are split into documents of this many
    /// ChatML turns, each opening with the caption; 1 (default) = single-turn documents, as a VLM is
    /// asked; 0 = one document per scene with all its questions.
    #[arg(long)]
    pub questions_per_document: Option<usize>,
    /// How the corpus writes a scene in the place of its image: `sentence` ("red circle at row 0
    /// column 3, …"), `grid` (one word per patch of the tower's 8×8 grid: "nothing redcircle …", the
    /// per-patch classes the tower is pretrained to predict), `grid-sum` (one input vector per
    /// patch: the summed embeddings of its content, row and column words) or `grids` (one word per
    /// cell of a 1×1, 2×2, 4×4 or 8×8 grid drawn per document: the layouts of V = 1, 4, 16, 64).
    /// Default: sentence.
    #[arg(long, value_enum)]
    pub caption: Option<synth::CaptionFormat>,
    /// `object_facts` scenes in the corpus: one object's caption and a question about one of its
    /// type's facts ("What is number 47 of the object?"), the world's knowledge that only text
    /// teaches (default 0: none).
    #[arg(long)]
    pub fact_scenes: Option<usize>,
    /// Percent (0–100) of the fact scenes' questions that ask the object's name instead: "What is
    /// the object?" → "red circle", read back out of the caption. It gives the LLM the skill a VLM's
    /// stage 1 can align visual tokens on (`train vlm --name-questions`); held-out accuracy still
    /// asks facts. Default 0.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=100), requires = "fact_scenes")]
    pub name_questions: Option<u32>,
    /// Objects in each fact scene's caption (1–6): the asked object and others of its scene, the
    /// questions naming its colour ("What is number 47 of the red object?"); the held-out split is
    /// drawn the same way. Default 1: the object alone.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=6), requires = "fact_scenes")]
    pub fact_objects: Option<u32>,
    /// Standard deviation of the weight matrices' normal initialisation of a fresh run (default
    /// 0.125, which is 1/√H for the `s` preset's width H = 64; ignored with `--init`, whose weights
    /// are continued).
    #[arg(long, conflicts_with = "init")]
    pub init_std: Option<f64>,
    /// Continue pretraining from this finished `train llm` directory of the same preset (its
    /// manifest is checked; fresh optimiser moments, this run's schedule) instead of a seeded
    /// initialisation.
    #[arg(long)]
    pub init: Option<PathBuf>,
    /// Stop after this many steps of this invocation (a checkpoint is saved); run the same command
    /// again to resume. The learning-rate schedule still spans `--steps`.
    #[arg(long)]
    pub stop_after: Option<usize>,
}

#[derive(clap::Args, Debug)]
pub struct VlmArgs {
    /// LLM size preset.
    #[arg(long, default_value = "s", value_parser = super::llm_preset_parser())]
    pub llm: String,
    /// V, visual tokens (1, 4, 16, 64 on the 8×8 grid).
    #[arg(long, default_value_t = 16)]
    pub visual_tokens: usize,
    /// Compressor.
    #[arg(long, default_value = "quecc", value_parser = super::trainable_compressor_parser())]
    pub compressor: String,
    /// The pretrained tower (from `vlmscale train vision`).
    #[arg(long)]
    pub tower: PathBuf,
    /// Output checkpoint directory (resumed from if it holds a checkpoint of the same run).
    #[arg(long)]
    pub out: PathBuf,
    /// Training data: a LLaVA JSONL from `vlmscale data make` (default: generated in memory).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Optimisation steps.
    #[arg(long)]
    pub steps: Option<usize>,
    /// Batch size (questions).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// Seed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Generated training images when `--data` is not given (each with 6 families × 2 questions).
    #[arg(long, conflicts_with = "data")]
    pub images: Option<usize>,
    /// Add this many generated `object_facts` images (dataset seed 1; one object each unless
    /// `--fact-objects`) after the Sort-of-CLEVR images: aligns the visual tokens on families the LLM
    /// reads from text while asking facts it learnt from text.
    #[arg(long, conflicts_with = "data")]
    pub fact_images: Option<usize>,
    /// Which properties the `--fact-images` questions ask: `train` (the first half; evaluation on
    /// `data make --facts test` then asks only facts taught in text) or `all`.
    #[arg(long, value_enum, default_value = "train", requires = "fact_images")]
    pub fact_split: synth::FactSplit,
    /// Percent (0–100) of the `--fact-images` questions that ask the object's name instead ("What is
    /// the object?" → "red circle"): a direct signal for aligning the visual tokens on the object
    /// when the LLM was pretrained with `train llm --name-questions`. Default 0.
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=100), requires = "fact_images")]
    pub name_questions: Option<u32>,
    /// Objects drawn in each `--fact-images` image (1–6): the asked one and others of its scene, the
    /// questions naming its colour ("What is number 47 of the red object?"), as the LLM's text asked
    /// them with `train llm --fact-objects`. Default 1: the object alone.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=6), requires = "fact_images")]
    pub fact_objects: Option<u32>,
    /// Standard deviation of the normal initialisation of the weight matrices (HF
    /// `initializer_range`, default 0.02).
    #[arg(long)]
    pub init_std: Option<f64>,
    /// Staged curriculum: train the first N steps on the short question form ("shape red": the
    /// visual tokens, then the family keyword and the colour, the answer next), then on the natural
    /// ChatML questions that `vlmscale eval` asks. 0 (default) = natural questions only. From
    /// scratch, a small LLM learns the colour → object lookup in the short form within ~2000 steps
    /// and carries it over to natural questions; trained on natural questions alone it stays at the
    /// answer prior (docs/training-notes.md).
    #[arg(long)]
    pub short_question_steps: Option<usize>,
    /// Stop after this many steps of this invocation (a checkpoint is saved); run the same command
    /// again to resume. The learning-rate schedule still spans `--steps`.
    #[arg(long)]
    pub stop_after: Option<usize>,
    /// Curriculum over the number of objects (generated data): during the first N steps (stage 1
    /// and 2 together) each image shows only k of its six objects, k = 1 + ⌊5 · step / N⌋, with its
    /// questions asked among them; then the full images (default 0: six throughout).
    #[arg(long)]
    pub object_ramp_steps: Option<usize>,
    /// A pretrained LLM directory (from `vlmscale train llm`; its manifest is checked) to start the
    /// LLM from instead of a random initialisation; its tokenizer is used.
    #[arg(long)]
    pub llm_init: Option<PathBuf>,
    /// Stage 1 (LLaVA's projector alignment): this many steps train only the compressor and
    /// projector with the LLM frozen, before the `--steps` of stage 2 that train everything.
    #[arg(long)]
    pub stage1_steps: Option<usize>,
    /// Stage 1's peak learning rate (default 1e-3, LLaVA's).
    #[arg(long)]
    pub stage1_lr: Option<f64>,
    /// Worker threads of the data-parallel step (`TrainableVlm::loss_and_grads`); 1 is bit-exact
    /// with earlier runs, more threads change only the order gradients are summed in.
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Evaluate a trained checkpoint: exact-match accuracy per question family (greedy decoding).
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Checkpoint directory.
    #[arg(long)]
    pub model: PathBuf,
    /// Held-out LLaVA JSONL from `vlmscale data make`.
    #[arg(long)]
    pub data: PathBuf,
    /// Evaluate at most this many questions.
    #[arg(long)]
    pub max_questions: Option<usize>,
    /// Write the report JSON here (atomically); it is always printed.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn bar(total: u64, what: &str) -> ProgressBar {
    let pb = ProgressBar::new(total);
    pb.set_style(
        ProgressStyle::with_template(&format!("{what} {{bar:30}} {{pos}}/{{len}} {{msg}} ETA {{eta}}"))
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    pb
}

pub fn run(t: Train) -> Result<()> {
    match t {
        Train::Vision(a) => {
            let mut cfg = ::train::vision_pretrain::VisionPretrainConfig::default();
            if let Some(s) = a.steps {
                cfg.steps = s;
            }
            if let Some(s) = a.seed {
                cfg.seed = s;
            }
            let pb = bar(cfg.steps as u64, "train vision");
            let rep = ::train::vision_pretrain::pretrain_vision(&cfg, &a.out, &mut |step, _total, loss| {
                pb.set_position(step as u64);
                pb.set_message(format!("loss {loss:.4}"));
            })?;
            pb.finish_and_clear();
            println!("{}", serde_json::to_string_pretty(&rep)?);
            println!("wrote the tower to {}", a.out.display());
        }
        Train::Llm(a) => train_llm(a)?,
        Train::Vlm(a) => {
            let mut cfg =
                ::train::vlm_train::VlmTrainConfig::new(&a.llm, &a.compressor, a.visual_tokens, &a.tower, &a.out);
            if let Some(d) = a.data {
                cfg.data = ::train::vlm_train::TrainData::Jsonl(d);
            }
            if let Some(s) = a.steps {
                cfg.steps = s;
            }
            if let Some(b) = a.batch_size {
                cfg.batch_size = b;
            }
            if let Some(lr) = a.lr {
                cfg.lr = lr;
            }
            if let Some(s) = a.seed {
                cfg.seed = s;
            }
            if let (Some(n), ::train::vlm_train::TrainData::Generated { images, .. }) = (a.images, &mut cfg.data) {
                *images = n;
            }
            if let (Some(n), ::train::vlm_train::TrainData::Generated { config, images }) = (a.fact_images, &cfg.data) {
                let facts = synth::DatasetConfig {
                    task: synth::Task::ObjectFacts,
                    seed: 1,
                    facts: a.fact_split,
                    name_questions: a.name_questions.unwrap_or(0),
                    fact_objects: a.fact_objects.unwrap_or(1),
                    ..Default::default()
                };
                cfg.data = ::train::vlm_train::TrainData::Mixture(vec![(*config, *images), (facts, n)]);
            }
            if let Some(s) = a.init_std {
                cfg.init_std = s;
            }
            if let Some(t) = a.threads {
                cfg.threads = t;
            }
            if let Some(n) = a.short_question_steps {
                cfg.short_question_steps = n;
            }
            if let Some(n) = a.object_ramp_steps {
                cfg.object_ramp_steps = n;
            }
            cfg.llm_init = a.llm_init;
            if let Some(n) = a.stage1_steps {
                cfg.stage1_steps = n;
            }
            if let Some(lr) = a.stage1_lr {
                cfg.stage1_lr = lr;
            }
            if let Some(n) = a.stop_after {
                if n == 0 {
                    anyhow::bail!("--stop-after must be > 0");
                }
                cfg.stop_after = Some(n);
            }
            let pb = bar(cfg.steps as u64, "train vlm");
            let rep = ::train::vlm_train::train_vlm(&cfg, &mut |s| {
                pb.set_position(s.step as u64);
                pb.set_message(format!(
                    "loss {:.4} lr {:.2e} |g| {:.2} {:.1} samples/s",
                    s.loss, s.lr, s.grad_norm, s.samples_per_s
                ));
            })?;
            pb.finish_and_clear();
            println!(
                "steps {} (resumed from {:?}), final loss {:.4}, {} LLM parameters, {:.1} samples/s; checkpoint in {}",
                rep.steps,
                rep.resumed_from,
                rep.final_loss,
                rep.llm_parameters,
                rep.samples_per_s,
                a.out.display()
            );
        }
    }
    Ok(())
}

fn train_llm(a: LlmArgs) -> Result<()> {
    let mut cfg = ::train::llm_pretrain::LlmPretrainConfig::new(&a.llm);
    let mut command = format!("vlmscale train llm --llm {} --out {}", a.llm, a.out.display());
    macro_rules! set {
        ($field:ident, $flag:literal) => {
            if let Some(v) = a.$field {
                cfg.$field = v;
                command.push_str(&format!(concat!(" --", $flag, " {}"), v));
            }
        };
    }
    set!(steps, "steps");
    if a.object_ramp_steps.is_none() {
        // The default curriculum scales with a shorter or longer run: 15 % of the steps.
        cfg.object_ramp_steps = cfg.steps * 3 / 20;
    }
    set!(batch_size, "batch-size");
    set!(lr, "lr");
    set!(seed, "seed");
    set!(scenes, "scenes");
    set!(fine_detail_scenes, "fine-detail-scenes");
    set!(eval_scenes, "eval-scenes");
    set!(short_question_steps, "short-question-steps");
    set!(object_ramp_steps, "object-ramp-steps");
    set!(reduced_scenes, "reduced-scenes");
    set!(questions_per_document, "questions-per-document");
    set!(fact_scenes, "fact-scenes");
    set!(name_questions, "name-questions");
    set!(fact_objects, "fact-objects");
    set!(init_std, "init-std");
    if let Some(init) = &a.init {
        cfg.init = Some(init.display().to_string());
        command.push_str(&format!(" --init {}", init.display()));
    }
    if let Some(c) = a.caption {
        cfg.caption = c;
        command.push_str(&format!(
            " --caption {}",
            clap::ValueEnum::to_possible_value(&c).map(|v| v.get_name().to_string()).unwrap_or_default()
        ));
    }
    if a.stop_after == Some(0) {
        anyhow::bail!("--stop-after must be > 0");
    }
    let pb = bar(cfg.steps as u64, &format!("train llm {}", a.llm));
    let rep = ::train::llm_pretrain::pretrain_llm(&cfg, &a.out, a.stop_after, &command, &mut |s| {
        pb.set_position(s.step as u64);
        pb.set_message(format!("loss {:.4} {:.0} docs/s", s.loss, s.docs_per_s));
    })?;
    pb.finish_and_clear();
    match rep.manifest {
        Some(m) => println!("{}", serde_json::to_string_pretty(&m)?),
        None => println!("stopped after step {} of {}; run the same command again to continue", rep.steps, cfg.steps),
    }
    Ok(())
}

/// A question's error prefixed with `FILE:LINE` of its record in the held-out JSONL `data` (found
/// by image and question text); other errors unchanged.
fn with_line(data: &std::path::Path, e: ::train::Error) -> anyhow::Error {
    let line = match &e {
        ::train::Error::Question { image, question, .. } => synth::read_records(data).ok().and_then(|rs| {
            rs.iter()
                .find(|r| {
                    r.question == *question && r.image_path.file_stem().is_some_and(|s| s.to_string_lossy() == *image)
                })
                .map(|r| r.line)
        }),
        _ => None,
    };
    match line {
        Some(line) => anyhow::Error::from(e).context(format!("{}:{line}", data.display())),
        None => e.into(),
    }
}

pub fn eval(a: EvalArgs) -> Result<()> {
    if let Some(out) = &a.out {
        super::check_output_file("--out", out)?;
    }
    super::prepare_inference();
    let samples = synth::read_dataset(&a.data)?;
    let total: usize = samples.iter().map(|s| s.qas.len()).sum::<usize>().min(a.max_questions.unwrap_or(usize::MAX));
    let pb = bar(total as u64, "eval");
    let rep = ::train::eval::evaluate(&a.model, &samples, a.max_questions, &mut |done, _| pb.set_position(done as u64))
        .map_err(|e| with_line(&a.data, e))?;
    pb.finish_and_clear();
    if let Some(out) = &a.out {
        ::train::eval::write_report(out, &rep)?;
    }
    println!("{}", serde_json::to_string_pretty(&rep)?);
    Ok(())
}

//! `vlmscale data …`: the generated benchmarks (synth crate).
use anyhow::Result;
use std::path::PathBuf;
use std::time::Instant;

#[derive(clap::Subcommand, Debug)]
pub enum Data {
    /// Generate a split of Sort-of-CLEVR or the fine-detail task: PNG images + a LLaVA-format JSONL
    /// (`{id, image, conversations}`), plus `tokenizer.json` and `tokenizer_config.json`.
    Make(MakeArgs),
}

#[derive(clap::Args, Debug)]
pub struct MakeArgs {
    /// Task: `sort_of_clevr` (relational reasoning, 6 question families) or `fine_detail` (read small digits).
    #[arg(long, value_enum, default_value_t = synth::Task::SortOfClevr)]
    pub task: synth::Task,
    /// Number of images.
    #[arg(long, default_value_t = 1000)]
    pub images: u64,
    /// Seed (the same seed gives byte-identical files).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Index of the first image (splits: e.g. train 0.., test from 1000000).
    #[arg(long, default_value_t = 0)]
    pub start: u64,
    /// Name of the JSONL file (default: `<task>_s<seed>`).
    #[arg(long)]
    pub name: Option<String>,
    /// Output folder (created if missing).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the split as a GQA-format benchmark for `vlmscale eval` / `eval-grid --benchmark
    /// gqa`: `<name>_gqa.jsonl` (LLaVA question lines `{question_id, image, text}`, the question as
    /// asked in training, no suffix) and `<name>_gqa_truth.json` (GQA's balanced-questions layout:
    /// question id → `{question, answer, imageId, isBalanced, types, groups, semantic, …}`, which GQA's
    /// own eval.py reads), question ids `<image id>_q<k>`.
    #[arg(long)]
    pub gqa: bool,
    /// `object_facts`: which properties the questions ask about — `all`, `train` (the first half:
    /// VLM training) or `test` (the second half: evaluation, facts only the LLM's text pretraining
    /// taught).
    #[arg(long, value_enum, default_value_t = synth::FactSplit::All)]
    pub facts: synth::FactSplit,
    /// `object_facts`: percent (0–100) of the questions that ask the object's name instead of a fact
    /// ("What is the object?" → "red circle", family `name`); 100 makes a naming benchmark.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub name_questions: u32,
    /// `object_facts`: objects drawn per image (1–6), the questions naming the asked object's colour
    /// when there are several ("What is number 47 of the red object?").
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=6))]
    pub fact_objects: u32,
    /// `fine_detail`: fewest and most digits of the number to read, `MIN,MAX` (default 2,3; one
    /// digit per 10-px cell of one row, so at most 8 on the 80-px image). Longer numbers need more
    /// visual tokens to be read: each digit is one patch.
    #[arg(long, value_name = "MIN,MAX", value_parser = digit_range)]
    pub digits: Option<(usize, usize)>,
}

/// Parses `MIN,MAX` for `--digits`.
fn digit_range(s: &str) -> std::result::Result<(usize, usize), String> {
    let bad = || format!("{s:?} is not MIN,MAX (two whole numbers, e.g. 6,8)");
    let (a, b) = s.split_once(',').ok_or_else(bad)?;
    Ok((a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?))
}

pub fn run(d: Data) -> Result<()> {
    match d {
        Data::Make(a) => make(a),
    }
}

fn make(a: MakeArgs) -> Result<()> {
    let task = a.task;
    if a.images == 0 {
        return Err(super::UsageError("--images must be ≥ 1".into()).into());
    }
    let end = a.start.checked_add(a.images).ok_or_else(|| super::UsageError("--start + --images overflows".into()))?;
    if a.digits.is_some() && task != synth::Task::FineDetail {
        return Err(super::UsageError("--digits applies to --task fine_detail only".into()).into());
    }
    let fine_detail = a.digits.map(|(min, max)| synth::FineDetailConfig::with_digits(min, max)).unwrap_or_default();
    let generator = synth::Generator::new(synth::DatasetConfig {
        task,
        seed: a.seed,
        facts: a.facts,
        name_questions: a.name_questions,
        fact_objects: a.fact_objects,
        fine_detail,
        ..Default::default()
    })?;
    let t = Instant::now();
    let samples = generator.generate(a.start..end)?;
    let gen_s = t.elapsed().as_secs_f64();
    let name = a.name.unwrap_or_else(|| format!("{}_s{}", task.name(), a.seed));
    let t = Instant::now();
    let jsonl = synth::write_dataset(&a.out, &name, &samples)?;
    let tok = synth::build_tokenizer(&[])?;
    synth::save_tokenizer(&tok, &a.out.join("tokenizer.json"))?;
    synth::tokenizer::save_tokenizer_config(&a.out.join("tokenizer_config.json"))?;
    if a.gqa {
        write_gqa(&a.out, &name, &samples)?;
    }
    let questions: usize = samples.iter().map(|s| s.qas.len()).sum();
    println!(
        "{} images, {questions} questions: generated in {gen_s:.2} s, written in {:.2} s",
        samples.len(),
        t.elapsed().as_secs_f64()
    );
    println!(
        "wrote {} (+ images/, tokenizer.json with {} tokens, tokenizer_config.json)",
        jsonl.display(),
        tok.get_vocab_size(true)
    );
    if a.gqa {
        println!("wrote {0}_gqa.jsonl and {0}_gqa_truth.json (GQA format)", a.out.join(&name).display());
    }
    Ok(())
}

/// The split as GQA-format questions and ground truth (see [`MakeArgs::gqa`]), written atomically.
fn write_gqa(out: &std::path::Path, name: &str, samples: &[synth::ImageSample]) -> Result<()> {
    let (mut lines, mut truth) = (String::new(), serde_json::Map::new());
    for s in samples {
        for (k, qa) in s.qas.iter().enumerate() {
            let id = format!("{}_q{k}", s.id);
            let line = serde_json::json!({
                "question_id": id,
                "image": format!("images/{}.png", s.id),
                "text": qa.question,
                "category": qa.family.name(),
            });
            lines += &format!("{line}\n");
            // GQA's question types (its eval.py reports accuracy per type): yes/no questions verify,
            // the others query; relations between objects are `rel`, the rest attributes.
            use synth::Family::*;
            let structural = if matches!(qa.family, Left | Top) { "verify" } else { "query" };
            let semantic = if matches!(qa.family, Left | Top | Closest | Furthest) { "rel" } else { "attr" };
            // Also the fields GQA's eval.py reads for every balanced question besides these: the
            // reasoning program `semantic` (its steps are counted; none here) and `groups` (the
            // answer distribution per global group), with GQA's other keys empty.
            truth.insert(
                id,
                serde_json::json!({"question": qa.question, "answer": qa.answer, "fullAnswer": qa.answer,
                    "imageId": s.id, "isBalanced": true,
                    "types": {"structural": structural, "semantic": semantic, "detailed": qa.family.name()},
                    "groups": {"global": qa.family.name(), "local": format!("{}-{}", qa.family.name(), s.id)},
                    "semantic": [], "entailed": [], "equivalent": [],
                    "annotations": {"question": {}, "answer": {}, "fullAnswer": {}}}),
            );
        }
    }
    scaling::output::write_atomic(&out.join(format!("{name}_gqa.jsonl")), lines.as_bytes())?;
    let truth = serde_json::to_string_pretty(&truth)?;
    scaling::output::write_atomic(&out.join(format!("{name}_gqa_truth.json")), truth.as_bytes())?;
    Ok(())
}

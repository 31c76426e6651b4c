//! Sweep machinery with the synthetic (test/demo) runner: grid expansion, failures, resumability,
//! order-independent aggregation, Slurm emission and the report's verdicts.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use sweep::grid::{Cell, SweepConfig};
use sweep::report::{analyse, ReportOptions, Verdict};
use sweep::runner::{CellResult, CellRunner};
use sweep::synthetic::SyntheticRunner;

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

/// The committed quick config, with results redirected into `dir`.
fn quick(dir: &Path) -> SweepConfig {
    let mut cfg = SweepConfig::from_path(&repo_file("sweeps/quick.toml")).unwrap();
    cfg.results_dir = dir.to_path_buf();
    cfg
}

fn config(text: &str, dir: &Path) -> SweepConfig {
    let p = dir.join("sweep.toml");
    std::fs::write(&p, text).unwrap();
    SweepConfig::from_path(&p).unwrap()
}

const THREE_SIZES: &str = r#"
name = "t"
results_dir = "res"
visual_tokens = [1, 4, 16, 64]
compressors = ["quecc", "quecc-noquery"]
tasks = ["sort_of_clevr", "fine_detail"]
[[llm]]
name = "a"
params = 0.002
[[llm]]
name = "b"
params = 0.008
[[llm]]
name = "c"
params = 0.03
"#;

/// `text` with the sizes a, b, c of [`THREE_SIZES`] replaced by the train crate's presets xs, s, m
/// (N derived from them), as a training runner needs.
fn with_presets(text: &str) -> String {
    text.replace("name = \"a\"\nparams = 0.002", "name = \"xs\"")
        .replace("name = \"b\"\nparams = 0.008", "name = \"s\"")
        .replace("name = \"c\"\nparams = 0.03", "name = \"m\"")
}

fn coarse() -> scaling::fit::grid::GridSpec {
    use scaling::fit::grid::linspace;
    scaling::fit::grid::GridSpec {
        scale: linspace(0.1, 0.7, 13),
        alpha: linspace(0.0, 0.2, 21),
        beta: linspace(0.0, 0.05, 11),
        offset: linspace(0.0, 0.3, 7),
    }
}

#[test]
fn quick_grid_expands_in_documented_order() {
    let cfg = SweepConfig::from_path(&repo_file("sweeps/quick.toml")).unwrap();
    let cells = cfg.cells();
    assert_eq!(cells.len(), 2 * 2 * 2 * 2);
    let ids: Vec<&str> = cells.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids[0], "sort_of_clevr.xs.v1.quecc");
    assert_eq!(ids[1], "sort_of_clevr.xs.v1.quecc-noquery");
    assert_eq!(ids[2], "sort_of_clevr.xs.v4.quecc");
    assert_eq!(ids[4], "sort_of_clevr.s.v1.quecc");
    assert_eq!(ids[8], "fine_detail.xs.v1.quecc");
    assert_eq!(ids[15], "fine_detail.s.v4.quecc-noquery");
    assert!(cells.iter().enumerate().all(|(i, c)| c.index == i));
    assert!(matches!(cfg.cell(16), Err(sweep::Error::Index { index: 16, cells: 16, .. })));
    // results_dir is resolved against the config's folder.
    assert!(cfg.results_dir.ends_with("sweeps/../results/quick"));
    // The default config parses too, and every cell can be trained (presets, compressors, V).
    let default = SweepConfig::from_path(&repo_file("sweeps/default.toml")).unwrap();
    assert!(default.cells().len() >= 3 * 4 * 2, "{}", default.cells().len());
    sweep::train_runner::TrainRunner::new(&default).unwrap();
    sweep::train_runner::TrainRunner::new(&cfg).unwrap();
}

/// N of a preset, computed independently of the train crate: the Qwen2 block's parameters (q with
/// bias, k/v with bias at the GQA width, o without; SwiGLU MLP; two RMSNorm weights), a tied embedding
/// counted once, the final norm — for hidden H, MLP width I, L layers, heads h, KV heads g, vocab W.
fn qwen2_params(h: usize, i: usize, l: usize, heads: usize, kv_heads: usize, vocab: usize) -> usize {
    let kv = kv_heads * (h / heads);
    let block = (h * h + h) + 2 * (h * kv + kv) + h * h + 3 * h * i + 2 * h;
    vocab * h + l * block + h
}

#[test]
fn llm_params_are_derived_from_the_train_presets() {
    let cfg = SweepConfig::from_path(&repo_file("sweeps/quick.toml")).unwrap();
    let vocab = sweep::llm_preset::sweep_vocab_size().unwrap();
    // xs: H 32, I 64, 2 layers, 2 heads, 1 KV head; s: H 64, I 128, 2 layers, 4 heads, 2 KV heads.
    assert_eq!(cfg.llms[0].name, "xs");
    assert_eq!(cfg.llms[0].params, qwen2_params(32, 64, 2, 2, 1, vocab) as f64 / 1e9);
    assert_eq!(cfg.llms[1].params, qwen2_params(64, 128, 2, 4, 2, vocab) as f64 / 1e9);
    assert!(cfg.llms[0].params > 1e-5 && cfg.llms[0].params < 1e-4, "{}", cfg.llms[0].params);
    // An explicit params wins; an unknown name without params is an error naming the key.
    let dir = tempfile::tempdir().unwrap();
    let c = config(&THREE_SIZES.replace("name = \"a\"\nparams = 0.002", "name = \"m\""), dir.path());
    assert_eq!(c.llms[0].params, qwen2_params(96, 256, 4, 6, 2, vocab) as f64 / 1e9);
    assert_eq!(c.llms[1].params, 0.008);
    let p = dir.path().join("bad.toml");
    std::fs::write(&p, THREE_SIZES.replace("params = 0.002\n", "")).unwrap();
    let e = SweepConfig::from_path(&p).unwrap_err().to_string();
    assert!(e.contains("`llm[0].params`") && e.contains("\"a\""), "{e}");
}

#[test]
fn train_settings_resolve_over_the_train_crate_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let text = with_presets(&format!("{THREE_SIZES}\n[train]\nsteps = 7\nlr = 0.01\nshort_question_steps = 3\n[train.task.fine_detail]\nsteps = 9\nimages = 33\ninit_std = 0.5\nshort_question_steps = 0\n[vision]\nsteps = 2\n"));
    let cfg = config(&text, dir.path());
    let r = sweep::train_runner::TrainRunner::new(&cfg).unwrap();
    let d = train::vlm_train::VlmTrainConfig::new("xs", "quecc", 1, Path::new(""), Path::new(""));
    let cells = cfg.cells();
    let soc = r.cell_settings(&cells[0]);
    assert_eq!((soc.steps, soc.lr, soc.batch_size, soc.warmup_ratio), (7, 0.01, d.batch_size, d.warmup_ratio));
    assert_eq!(soc.init_std, d.init_std);
    assert_eq!((soc.short_question_steps, d.short_question_steps), (3, 0));
    let fd = r.cell_settings(cells.iter().find(|c| c.task == "fine_detail").unwrap());
    assert_eq!((fd.steps, fd.images, fd.lr, fd.init_std, fd.short_question_steps), (9, 33, 0.01, 0.5, 0));
    assert_eq!(fd.eval_seed, soc.seed + 1);
    assert_eq!(r.tower_settings().steps, 2);
    assert_eq!(r.tower_settings().images, train::vision_pretrain::VisionPretrainConfig::default().images);
}

/// An `object_facts` cell with `sort_of_clevr_images` trains on the mixture `vlmscale train vlm
/// --images 500 --fact-images 30000 --fact-split all` builds at seed 0 (docs/training-notes.md,
/// "Knowledge"): 500 Sort-of-CLEVR scenes of the cell's seed with two questions per family, then
/// 30 000 one-question fact images of seed 1; other tasks keep their plain generated split.
#[test]
fn object_facts_cells_train_on_the_scene_and_fact_mixture() {
    use synth::{DatasetConfig, FactSplit, Task};
    use train::vlm_train::TrainData;
    let dir = tempfile::tempdir().unwrap();
    let text = with_presets(&format!(
        "{}\n[train]\nquestions_per_family = 2\n[train.task.object_facts]\nimages = 30000\nsort_of_clevr_images = 500\nfacts = \"all\"\n",
        THREE_SIZES.replace(r#"tasks = ["sort_of_clevr", "fine_detail"]"#, r#"tasks = ["sort_of_clevr", "object_facts"]"#)
    ));
    let cfg = config(&text, dir.path());
    let r = sweep::train_runner::TrainRunner::new(&cfg).unwrap();
    let cells = cfg.cells();
    let facts = r.cell_settings(cells.iter().find(|c| c.task == "object_facts").unwrap());
    let scenes =
        DatasetConfig { task: Task::SortOfClevr, seed: 0, questions_per_family: 2, ..DatasetConfig::default() };
    let fact_images = DatasetConfig {
        task: Task::ObjectFacts,
        seed: 1,
        questions_per_family: 1,
        facts: FactSplit::All,
        ..DatasetConfig::default()
    };
    assert_eq!(
        sweep::train_runner::training_data(Task::ObjectFacts, &facts),
        TrainData::Mixture(vec![(scenes, 500), (fact_images, 30000)])
    );
    let soc = r.cell_settings(&cells[0]);
    assert_eq!((soc.facts, soc.sort_of_clevr_images), (None, 0));
    assert_eq!(
        sweep::train_runner::training_data(Task::SortOfClevr, &soc),
        TrainData::Generated { config: DatasetConfig { facts: FactSplit::Train, ..scenes }, images: soc.images }
    );
    // Without the keys, fact cells ask the training half of the properties only.
    let plain = config(&text.replace("sort_of_clevr_images = 500\nfacts = \"all\"\n", ""), dir.path());
    let r = sweep::train_runner::TrainRunner::new(&plain).unwrap();
    let s = r.cell_settings(plain.cells().iter().find(|c| c.task == "object_facts").unwrap());
    assert_eq!((s.facts, s.sort_of_clevr_images), (Some(FactSplit::Train), 0));
    // The keys belong to fact cells: elsewhere, and `facts = "test"`, are errors naming the key.
    let p = dir.path().join("bad.toml");
    let err = |t: &str| {
        std::fs::write(&p, t).unwrap();
        SweepConfig::from_path(&p).unwrap_err().to_string()
    };
    let e = err(&format!("{THREE_SIZES}\n[train]\nsort_of_clevr_images = 10\n"));
    assert!(e.contains("bad.toml") && e.contains("`train.sort_of_clevr_images`") && e.contains("object_facts"), "{e}");
    let e = err(&format!("{THREE_SIZES}\n[train.task.fine_detail]\nfacts = \"all\"\n"));
    assert!(e.contains("`train.task.fine_detail.facts`"), "{e}");
    let e = err(&text.replace("facts = \"all\"", "facts = \"test\""));
    assert!(e.contains("`train.task.object_facts.facts`") && e.contains("evaluation"), "{e}");
}

/// `name_questions` and `fact_objects` reach the fact images of `object_facts` cells only, as
/// `vlmscale train vlm --fact-images 30000 --name-questions 25 --fact-objects 3` builds them (seed
/// 1); a share above 100, 7 objects or a key another task would get is an
/// error naming the key.
#[test]
fn name_questions_and_fact_objects_reach_the_fact_images_only() {
    use synth::{DatasetConfig, FactSplit, Task};
    use train::vlm_train::TrainData;
    let dir = tempfile::tempdir().unwrap();
    let text = with_presets(&format!(
        "{}\n[train.task.object_facts]\nimages = 30000\nsort_of_clevr_images = 500\nname_questions = 25\nfact_objects = 3\n",
        THREE_SIZES
            .replace(r#"tasks = ["sort_of_clevr", "fine_detail"]"#, r#"tasks = ["sort_of_clevr", "object_facts"]"#)
    ));
    let cfg = config(&text, dir.path());
    let r = sweep::train_runner::TrainRunner::new(&cfg).unwrap();
    let cells = cfg.cells();
    let facts = r.cell_settings(cells.iter().find(|c| c.task == "object_facts").unwrap());
    assert_eq!((facts.name_questions, facts.fact_objects), (25, 3));
    let TrainData::Mixture(parts) = sweep::train_runner::training_data(Task::ObjectFacts, &facts) else {
        panic!("an object_facts cell with scenes trains on a mixture")
    };
    assert_eq!(parts[0].0.name_questions, 0, "the Sort-of-CLEVR scenes ask no names");
    let fact_images = DatasetConfig {
        task: Task::ObjectFacts,
        seed: 1,
        questions_per_family: 1,
        facts: FactSplit::Train,
        name_questions: 25,
        fact_objects: 3,
        ..DatasetConfig::default()
    };
    assert_eq!(parts[1], (fact_images, 30000));
    assert_eq!(parts[0].0.fact_objects, 1);
    let soc = r.cell_settings(&cells[0]);
    assert_eq!((soc.name_questions, soc.fact_objects), (0, 1));
    // Cells without the key keep their settings' serialisation (finished cells stay fresh).
    let plain = config(&text.replace("name_questions = 25\nfact_objects = 3\n", ""), dir.path());
    let r2 = sweep::train_runner::TrainRunner::new(&plain).unwrap();
    let s = r2.cell_settings(plain.cells().iter().find(|c| c.task == "object_facts").unwrap());
    let json = serde_json::to_string(&s).unwrap();
    assert!(!json.contains("name_questions") && !json.contains("fact_objects"), "{json}");
    let p = dir.path().join("bad.toml");
    let err = |t: &str| {
        std::fs::write(&p, t).unwrap();
        SweepConfig::from_path(&p).unwrap_err().to_string()
    };
    let e = err(&text.replace("name_questions = 25", "name_questions = 101"));
    assert!(e.contains("`train.task.object_facts.name_questions`") && e.contains("101"), "{e}");
    let e = err(&text.replace("fact_objects = 3", "fact_objects = 7"));
    assert!(e.contains("`train.task.object_facts.fact_objects`") && e.contains('7'), "{e}");
    let e = err(&format!("{THREE_SIZES}\n[train]\nname_questions = 10\n"));
    assert!(e.contains("`train.name_questions`") && e.contains("object_facts"), "{e}");
}

/// `[train.task.fine_detail] digits = [6, 8]` sets the number's length of the fine-detail cells'
/// training and held-out images (what `vlmscale data make --digits 6,8` writes): every generated
/// answer has 6 to 8 digits. Other cells, and fine-detail cells without the key, keep their settings'
/// serialisation; a range that does not fit the row, or the key where another task would get it, is
/// an error naming the key.
#[test]
fn digits_reach_the_fine_detail_images_only() {
    use synth::{Generator, Task};
    use train::vlm_train::TrainData;
    let dir = tempfile::tempdir().unwrap();
    let text = with_presets(&format!("{THREE_SIZES}\n[train.task.fine_detail]\ndigits = [6, 8]\n"));
    let cfg = config(&text, dir.path());
    let r = sweep::train_runner::TrainRunner::new(&cfg).unwrap();
    let cells = cfg.cells();
    let fd = r.cell_settings(cells.iter().find(|c| c.task == "fine_detail").unwrap());
    assert_eq!(fd.digits, Some([6, 8]));
    let TrainData::Generated { config: dc, .. } = sweep::train_runner::training_data(Task::FineDetail, &fd) else {
        panic!("a fine-detail cell trains on generated images")
    };
    let mut lengths = std::collections::BTreeSet::new();
    for sample in Generator::new(dc).unwrap().generate(0..60).unwrap() {
        lengths.insert(sample.qas[0].answer.len());
    }
    assert_eq!(lengths.into_iter().collect::<Vec<_>>(), [6, 7, 8]);
    let soc = r.cell_settings(&cells[0]);
    assert!(soc.digits.is_none() && !serde_json::to_string(&soc).unwrap().contains("\"digits\""));
    let plain = config(&with_presets(THREE_SIZES), dir.path());
    let r2 = sweep::train_runner::TrainRunner::new(&plain).unwrap();
    let s = r2.cell_settings(plain.cells().iter().find(|c| c.task == "fine_detail").unwrap());
    assert!(!serde_json::to_string(&s).unwrap().contains("\"digits\""));
    let p = dir.path().join("bad.toml");
    let err = |t: &str| {
        std::fs::write(&p, t).unwrap();
        SweepConfig::from_path(&p).unwrap_err().to_string()
    };
    let e = err(&text.replace("[6, 8]", "[6, 9]"));
    assert!(e.contains("`train.task.fine_detail.digits`") && e.contains("do not fit"), "{e}");
    let e = err(&text.replace("[6, 8]", "[4, 2]"));
    assert!(e.contains("`train.task.fine_detail.digits`"), "{e}");
    let e = err(&format!("{THREE_SIZES}\n[train]\ndigits = [4, 6]\n"));
    assert!(e.contains("`train.digits`") && e.contains("sort_of_clevr"), "{e}");
}

/// The knowledge grid's config loads; every size starts from a shipped LLM pretrained on the world's
/// facts, and its fact cells train on the scene + fact mixture.
#[test]
fn the_knowledge_grid_starts_from_the_shipped_knowledge_llms() {
    let cfg = SweepConfig::from_path(&repo_file("sweeps/knowledge.toml")).unwrap();
    let names: Vec<&str> = cfg.llms.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["xs", "s", "m", "l"]);
    assert_eq!(cfg.cells().len(), 4 * (4 + 2));
    let r = sweep::train_runner::TrainRunner::new(&cfg).unwrap();
    for cell in cfg.cells() {
        let s = r.cell_settings(&cell);
        assert!(s.llm_init_sha256.is_some(), "{}: no pretrained LLM manifest", cell.id);
        assert_eq!(
            (s.facts, s.sort_of_clevr_images, s.images),
            (Some(synth::FactSplit::All), 500, 30000),
            "{}",
            cell.id
        );
    }
}

#[test]
fn invalid_configs_name_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.toml");
    let err = |text: &str| {
        std::fs::write(&p, text).unwrap();
        SweepConfig::from_path(&p).unwrap_err().to_string()
    };
    let e = err(&THREE_SIZES.replace("[1, 4, 16, 64]", "[1, 4, 4]"));
    assert!(e.contains("bad.toml") && e.contains("`visual_tokens`") && e.contains("twice"), "{e}");
    let e = err(&THREE_SIZES.replace("params = 0.008", "params = -1"));
    assert!(e.contains("`llm[1].params`"), "{e}");
    let e = err(&THREE_SIZES.replace("params = 0.008", "params = 0.002"));
    assert!(e.contains("`llm[1].params`") && e.contains("distinct"), "{e}");
    let e = err(&THREE_SIZES.replace("visual_tokens = ", "stepz = 2\nvisual_tokens = "));
    assert!(e.contains("stepz"), "{e}");
    let e = err(&format!("{THREE_SIZES}\n[train]\nstepz = 2\n"));
    assert!(e.contains("stepz"), "{e}");
    let e = err(&format!("{THREE_SIZES}\n[train]\nsteps = 0\n"));
    assert!(e.contains("bad.toml") && e.contains("`train.steps`"), "{e}");
    let e = err(&format!("{THREE_SIZES}\n[train.task.ocr]\nsteps = 3\n"));
    assert!(e.contains("`train.task.ocr`"), "{e}");
    let e = err(&format!("{THREE_SIZES}\n[train]\ninit_std = 0.0\n"));
    assert!(e.contains("`train.init_std`"), "{e}");
    let e = err(&format!("{THREE_SIZES}\n[train]\nsteps = 5\nshort_question_steps = 6\n"));
    assert!(e.contains("`train.short_question_steps`") && e.contains("more than the 5 steps"), "{e}");
    let e = err(&format!("{THREE_SIZES}\n[vision]\nlr = -1.0\n"));
    assert!(e.contains("`vision.lr`"), "{e}");
    let e = err(&format!("{THREE_SIZES}\n[compressor_visual_tokens]\nquecc-noquery = [1, 2]\n"));
    assert!(e.contains("`compressor_visual_tokens.quecc-noquery`") && e.contains("V = 2"), "{e}");
    let e = err(&THREE_SIZES.replace("\"quecc\",", "\"que cc\","));
    assert!(e.contains("`compressors[0]`"), "{e}");
    // TOML errors as FILE:LINE:COLUMN (the value `"zero"` starts at line 2, column 8), not byte offsets.
    let e = err("name = \"x\"\nseed = \"zero\"\nvisual_tokens = [1]\n");
    assert!(e.contains("bad.toml:2:8:") && !e.contains("bytes"), "{e}");
    // The train runner rejects what it cannot train before any cell runs: an unknown LLM preset, an
    // unknown compressor.
    std::fs::write(&p, THREE_SIZES.replace("\"quecc\",", "\"quec\",")).unwrap();
    let cfg = SweepConfig::from_path(&p).unwrap();
    let e = sweep::train_runner::TrainRunner::new(&cfg).err().unwrap().to_string();
    assert!(e.contains("`llm[0].name`") && e.contains("\"a\""), "{e}");
    std::fs::write(
        &p,
        THREE_SIZES
            .replace("\"quecc\",", "\"quec\",")
            .replace("name = \"a\"", "name = \"xs\"")
            .replace("name = \"b\"", "name = \"s\"")
            .replace("name = \"c\"", "name = \"m\""),
    )
    .unwrap();
    let cfg = SweepConfig::from_path(&p).unwrap();
    let e = sweep::train_runner::TrainRunner::new(&cfg).err().unwrap().to_string();
    assert!(e.contains("`compressors[0]`") && e.contains("\"quec\""), "{e}");
}

#[test]
fn a_compressor_restricted_to_some_v_is_run_only_there() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&format!("{THREE_SIZES}\n[compressor_visual_tokens]\nquecc-noquery = [1, 4]\n"), dir.path());
    let cells = cfg.cells();
    assert_eq!(cells.len(), 2 * 3 * (4 + 2));
    let ids: Vec<&str> = cells.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        &ids[..7],
        &[
            "sort_of_clevr.a.v1.quecc",
            "sort_of_clevr.a.v1.quecc-noquery",
            "sort_of_clevr.a.v4.quecc",
            "sort_of_clevr.a.v4.quecc-noquery",
            "sort_of_clevr.a.v16.quecc",
            "sort_of_clevr.a.v64.quecc",
            "sort_of_clevr.b.v1.quecc"
        ]
    );
    assert!(cells.iter().enumerate().all(|(i, c)| c.index == i));
}

#[test]
fn failed_cell_is_recorded_and_others_finish_then_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = quick(dir.path());
    let bad = "sort_of_clevr.s.v4.quecc".to_string();
    let r = SyntheticRunner { fail: vec![bad.clone()], ..Default::default() };
    let s = sweep::sweep::run_sweep(&cfg, &r, 2, false).unwrap();
    assert_eq!((s.total, s.skipped, s.ran), (16, 0, 15));
    assert_eq!(s.failed.len(), 1);
    assert_eq!(s.failed[0].0, bad);
    assert!(matches!(s.clone().into_result(), Err(sweep::Error::CellsFailed { .. })));
    let failure = cfg.cells_dir().join(format!("{bad}.failed.json"));
    assert!(failure.exists());
    let agg = sweep::aggregate::write_aggregate(&cfg).unwrap();
    assert_eq!((agg.rows, agg.missing.clone(), agg.failed.clone()), (15, vec![bad.clone()], vec![bad.clone()]));

    // Rerun with a healthy runner: only the failed cell runs; the record is removed.
    let s = sweep::sweep::run_sweep(&cfg, &SyntheticRunner::default(), 2, false).unwrap();
    assert_eq!((s.skipped, s.ran, s.failed.len()), (15, 1, 0));
    assert!(!failure.exists());
    let (csv, missing, _, rows) = sweep::aggregate::aggregate_csv(&cfg).unwrap();
    assert!(missing.is_empty() && rows == 16);

    // Same bytes as an uninterrupted sweep elsewhere.
    let dir2 = tempfile::tempdir().unwrap();
    let cfg2 = quick(dir2.path());
    sweep::sweep::run_sweep(&cfg2, &SyntheticRunner::default(), 1, false).unwrap().into_result().unwrap();
    assert_eq!(csv, sweep::aggregate::aggregate_csv(&cfg2).unwrap().0);
}

/// Finishes cells in reverse index order (later cells sleep less).
struct Reversed(SyntheticRunner);
impl CellRunner for Reversed {
    fn name(&self) -> &str {
        "synthetic"
    }
    fn run(&self, cell: &Cell, out: &Path) -> sweep::Result<CellResult> {
        std::thread::sleep(Duration::from_millis(5 * (16 - cell.index as u64)));
        self.0.run(cell, out)
    }
}

#[test]
fn aggregate_is_in_index_order_whatever_the_finishing_order() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (c1, c2) = (quick(d1.path()), quick(d2.path()));
    sweep::sweep::run_sweep(&c1, &Reversed(SyntheticRunner::default()), 4, false).unwrap();
    sweep::sweep::run_sweep(&c2, &SyntheticRunner::default(), 1, false).unwrap();
    let a1 = sweep::aggregate::write_aggregate(&c1).unwrap();
    sweep::aggregate::write_aggregate(&c2).unwrap();
    let b1 = std::fs::read(&a1.path).unwrap();
    assert_eq!(b1, std::fs::read(c2.aggregate_path()).unwrap());
    let text = String::from_utf8(b1).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "llm_params,visual_tokens,text_tokens,score,task,compressor");
    assert_eq!(lines.len(), 17);
    // Row 0 is cell 0: N = the xs preset's, V = 1, QueCC; its score is the synthetic law's within the
    // ±0.002 noise: 1 − (0.1 · N^−0.1 + 0.05).
    let f: Vec<&str> = lines[1].split(',').collect();
    let n = c1.llms[0].params;
    assert_eq!((f[0], f[1], f[2], f[4], f[5]), (n.to_string().as_str(), "1", "12", "sort_of_clevr", "quecc"));
    let expected = 1.0 - (0.1 * n.powf(-0.1) + 0.05);
    assert!((f[3].parse::<f64>().unwrap() - expected).abs() <= 0.002 + 1e-12, "{} vs {expected}", f[3]);
    // The scaling crate reads it.
    let ds = scaling::data::Dataset::from_path(&a1.path).unwrap();
    assert_eq!(ds.rows.len(), 16);
    // Cell JSON carries per-family accuracy and the runner's name.
    let r = sweep::runner::read_result(&c1.cells_dir(), &c1.cell(0).unwrap()).unwrap().unwrap();
    assert_eq!(r.runner, "synthetic");
    assert_eq!(r.family_accuracy.len(), 2);
}

#[test]
fn run_cell_skips_a_finished_cell() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = quick(dir.path());
    let first = sweep::sweep::run_cell(&cfg, &SyntheticRunner::default(), 3).unwrap();
    // A runner that would fail is not called again for a finished cell.
    let failing = SyntheticRunner { fail: vec![first.cell_id.clone()], ..Default::default() };
    let stored = sweep::runner::read_result(&cfg.cells_dir(), &cfg.cell(3).unwrap()).unwrap().unwrap();
    assert_eq!(stored.cell_id, first.cell_id);
    assert_eq!(sweep::sweep::run_cell(&cfg, &failing, 3).unwrap(), stored);
    // A corrupt result names its file.
    std::fs::write(cfg.cells_dir().join(format!("{}.json", first.cell_id)), "{").unwrap();
    let e = sweep::sweep::run_cell(&cfg, &failing, 3).unwrap_err().to_string();
    assert!(e.contains(&format!("{}.json", first.cell_id)), "{e}");
}

#[test]
fn slurm_scripts_run_each_cell_and_wire_the_dependency() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = quick(dir.path());
    let opts = sweep::slurm::SlurmOptions {
        binary: "/opt/vlmscale".into(),
        extra_args: vec!["--runner".into(), "synthetic".into()],
        results_dir: dir.path().to_path_buf(),
        max_parallel: Some(2),
        cpus_per_task: 1,
    };
    let files = sweep::slurm::emit(&cfg, &opts, &dir.path().join("slurm")).unwrap();
    let array = std::fs::read_to_string(&files[0]).unwrap();
    assert!(array.contains("#SBATCH --array=0-15%2\n"), "{array}");
    let cfgq = sweep::slurm::shell_quote(&cfg.path.display().to_string());
    assert!(
        array.contains(&format!("exec '/opt/vlmscale' sweep run-cell --config {cfgq} '--runner' 'synthetic' --index \"$SLURM_ARRAY_TASK_ID\"")),
        "{array}"
    );
    let agg = std::fs::read_to_string(&files[1]).unwrap();
    assert!(agg.contains("sweep aggregate --config") && agg.contains("sweep report --config"), "{agg}");
    let submit = std::fs::read_to_string(&files[2]).unwrap();
    assert!(submit.contains("--dependency=afterok:\"$array\""), "{submit}");
    assert_eq!(sweep::slurm::shell_quote("it's"), r"'it'\''s'");
}

fn verdicts(a: &sweep::report::Analysis) -> BTreeMap<String, Verdict> {
    a.claims.iter().map(|c| (c.key.clone(), c.verdict)).collect()
}

#[test]
fn report_reproduces_the_claims_built_into_the_synthetic_law() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(THREE_SIZES, dir.path());
    sweep::sweep::run_sweep(&cfg, &SyntheticRunner::default(), 2, false).unwrap().into_result().unwrap();
    let agg = sweep::aggregate::write_aggregate(&cfg).unwrap();
    let opts = ReportOptions { bootstrap: 0, grid: Some(coarse()), plots: true, ..Default::default() };
    let out = dir.path().join("report");
    let (a, files) = sweep::report::write_report(&agg.path, &opts, &out).unwrap();
    let v = verdicts(&a);
    for k in ["alpha_gt_beta", "fine_detail_larger_beta", "quecc_beats_query_free", "leave_one_size_out_sort_of_clevr"]
    {
        assert_eq!(v[k], Verdict::Reproduced, "{k}: {:?}", a.claims);
    }
    // The synthetic law's exponents are recovered (it is exact up to ±0.002 noise).
    let law = a.fits["sort_of_clevr"].law();
    assert!((law.alpha() - 0.1).abs() < 0.03 && (law.beta() - 0.02).abs() < 0.01, "{law:?}");
    for f in ["report.md", "cells.md", "fits.json", "figure1_sort_of_clevr_q0.png", "figure1_fine_detail_q0.svg"] {
        assert!(files.contains(&out.join(f)), "{f} missing: {files:?}");
    }
    let cells = std::fs::read_to_string(out.join("cells.md")).unwrap();
    assert_eq!(cells.lines().filter(|l| l.starts_with("| ") && !l.starts_with("| #")).count(), 48);
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("**reproduced**") && !md.contains("NOT reproduced"), "{md}");
}

/// Writes a CSV from a law per task: error = A·N^−α·V^−β + D (× (1 + k/V) for the query-free compressor).
fn law_csv(path: &Path, laws: &[(&str, f64, f64, f64, f64)], query_free_penalty: f64) {
    let mut s = String::from("llm_params,visual_tokens,text_tokens,score,task,compressor\n");
    for &(task, a, al, be, d) in laws {
        for n in [0.002, 0.008, 0.03] {
            for v in [1.0f64, 4.0, 16.0, 64.0] {
                let e = a * f64::powf(n, -al) * v.powf(-be) + d;
                s += &format!("{n},{v},10,{},{task},quecc\n", 1.0 - e);
                s += &format!("{n},{v},10,{},{task},quecc-noquery\n", 1.0 - e * (1.0 + query_free_penalty / v));
            }
        }
    }
    std::fs::write(path, s).unwrap();
}

#[test]
fn report_says_not_reproduced_when_the_data_contradict_the_paper() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("scores.csv");
    // Reasoning with α < β; fine-detail with a relatively smaller β; the query-free compressor better.
    law_csv(&csv, &[("sort_of_clevr", 0.25, 0.02, 0.04, 0.05), ("fine_detail", 0.3, 0.15, 0.01, 0.1)], -0.2);
    let opts = ReportOptions { bootstrap: 0, grid: Some(coarse()), plots: false, ..Default::default() };
    let (a, _) = sweep::report::write_report(&csv, &opts, &dir.path().join("r")).unwrap();
    let v = verdicts(&a);
    for k in ["alpha_gt_beta", "fine_detail_larger_beta", "quecc_beats_query_free"] {
        assert_eq!(v[k], Verdict::NotReproduced, "{k}: {:?}", a.claims);
    }
    // Exact law: the held-out size is predicted well.
    assert_eq!(v["leave_one_size_out_sort_of_clevr"], Verdict::Reproduced, "{:?}", a.claims);
    let md = std::fs::read_to_string(dir.path().join("r/report.md")).unwrap();
    assert!(md.contains("NOT reproduced"));
}

#[test]
fn report_marks_untestable_claims() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("scores.csv");
    law_csv(&csv, &[("sort_of_clevr", 0.25, 0.15, 0.02, 0.05)], 0.3);
    let ds = scaling::data::Dataset::from_path(&csv).unwrap();
    let opts = ReportOptions { bootstrap: 0, grid: Some(coarse()), plots: false, ..Default::default() };
    let v = verdicts(&analyse(&ds, &opts).unwrap());
    assert_eq!(v["alpha_gt_beta"], Verdict::Reproduced);
    assert_eq!(v["fine_detail_larger_beta"], Verdict::NotTested);
    assert_eq!(v["leave_one_size_out_fine_detail"], Verdict::NotTested);
}

#[test]
fn fine_detail_ratio_is_not_tested_when_a_fit_has_no_n_effect() {
    // Fine-detail scores that do not depend on N at all: the fitted α is 0, β/α is unbounded and the
    // comparison of ratios says nothing, so the claim is not tested (and the evidence says why).
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("scores.csv");
    law_csv(&csv, &[("sort_of_clevr", 0.25, 0.15, 0.02, 0.05), ("fine_detail", 0.25, 0.0, 0.05, 0.05)], 0.3);
    let ds = scaling::data::Dataset::from_path(&csv).unwrap();
    let opts = ReportOptions { bootstrap: 0, grid: Some(coarse()), plots: false, ..Default::default() };
    let a = analyse(&ds, &opts).unwrap();
    assert!(a.fits["fine_detail"].law().alpha() < sweep::report::ALPHA_ZERO, "{}", a.fits["fine_detail"].law().alpha());
    let c = a.claims.iter().find(|c| c.key == "fine_detail_larger_beta").unwrap();
    assert_eq!(c.verdict, Verdict::NotTested);
    assert!(c.evidence.contains("unbounded (α ≈ 0)"), "{}", c.evidence);
}

#[test]
fn task_groups_average_their_members_where_all_have_finished() {
    let dir = tempfile::tempdir().unwrap();
    let cfg =
        config(&format!("{THREE_SIZES}\n[task_groups]\nboth = [\"sort_of_clevr\", \"fine_detail\"]\n"), dir.path());
    // No cells for the group itself.
    assert_eq!(cfg.cells().len(), 2 * 3 * 4 * 2);
    let bad = "fine_detail.b.v4.quecc".to_string();
    let r = SyntheticRunner { fail: vec![bad], ..Default::default() };
    sweep::sweep::run_sweep(&cfg, &r, 2, false).unwrap();
    let (csv, _, _, rows) = sweep::aggregate::aggregate_csv(&cfg).unwrap();
    assert_eq!(rows, 2 * 3 * 4 * 2 - 1);
    let parse = |l: &str| -> (String, String, String, f64, f64) {
        let f: Vec<&str> = l.split(',').collect();
        (f[4].to_string(), f[0].to_string(), format!("{}/{}", f[1], f[5]), f[3].parse().unwrap(), f[2].parse().unwrap())
    };
    let lines: Vec<_> = csv.lines().skip(1).map(parse).collect();
    let groups: Vec<_> = lines.iter().filter(|l| l.0 == "both").collect();
    // One row per (N, V, compressor) but the failed cell's.
    assert_eq!(groups.len(), 3 * 4 * 2 - 1);
    assert!(!groups.iter().any(|g| g.2 == "4/quecc" && g.1 == cfg.llms[1].params.to_string()));
    for g in groups {
        let member = |task: &str| lines.iter().find(|l| l.0 == task && l.1 == g.1 && l.2 == g.2).unwrap();
        let (a, b) = (member("sort_of_clevr"), member("fine_detail"));
        assert!((g.3 - (a.3 + b.3) / 2.0).abs() < 1e-12, "{g:?}");
        assert!((g.4 - (a.4 + b.4) / 2.0).abs() < 1e-12, "{g:?}");
    }
    // The scaling crate reads the group as a task of its own.
    let ds = scaling::data::Dataset::from_csv_str(&csv, "agg").unwrap();
    assert!(ds.tasks().contains(&"both".to_string()));

    // A group named like a task, with an unknown member, or empty, is refused with its key.
    for (body, needle) in [
        ("sort_of_clevr = [\"fine_detail\"]", "is also a task"),
        ("both = [\"sort_of_clevr\", \"ocr\"]", "`ocr` is not in `tasks`"),
        ("both = []", "at least one value"),
    ] {
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, format!("{THREE_SIZES}\n[task_groups]\n{body}\n")).unwrap();
        let err = SweepConfig::from_path(&p).unwrap_err().to_string();
        assert!(err.contains("task_groups.") && err.contains(needle), "{err}");
    }
}

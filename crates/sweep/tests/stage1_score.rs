//! A cell that starts from a pretrained LLM is scored twice by the training runner: at the end of
//! stage 1 (`eval_stage1.json`, the LLM still as pretrained) and at the end; the report shows both.
use std::path::Path;
use sweep::grid::SweepConfig;
use sweep::report::{score_tables, sweep_cells, sweep_cells_csv, CELLS_CSV_HEADER};
use sweep::train_runner::{TrainRunner, STAGE1_EVAL_FILE};

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn a_two_stage_cell_records_its_score_at_the_end_of_stage_1() {
    let tmp = tempfile::tempdir().unwrap();
    let llm = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/llm-knowledge/xs");
    let text = format!(
        r#"
name = "s1"
results_dir = "res"
visual_tokens = [4]
compressors = ["quecc"]
tasks = ["object_facts"]
[[llm]]
name = "xs"
pretrained = "{}"
[train]
stage1_steps = 3
steps = 2
batch_size = 4
images = 8
eval_images = 6
[train.task.object_facts]
facts = "all"
[vision]
steps = 2
images = 16
batch_size = 8
"#,
        llm.display()
    );
    let path = tmp.path().join("sweep.toml");
    std::fs::write(&path, text).unwrap();
    let cfg = SweepConfig::from_path(&path).unwrap();
    let runner = TrainRunner::new(&cfg).unwrap();
    let r = sweep::sweep::run_cell(&cfg, &runner, 0).unwrap();

    // The stage-1 evaluation is on disk, and the cell's details repeat its counts.
    let dir = cfg.cells_dir().join(&r.cell_id);
    let ev = json(&dir.join(STAGE1_EVAL_FILE));
    let (c, n) = (ev["overall"]["correct"].as_u64().unwrap(), ev["overall"]["total"].as_u64().unwrap());
    assert_eq!(n, 6, "one fact question per held-out image");
    let d = r.details.as_ref().unwrap();
    assert_eq!(d["stage1_score"].as_f64().unwrap(), c as f64 / n as f64);
    assert_eq!(
        d["stage1_family_accuracy"]["fact"].as_f64().unwrap(),
        ev["families"]["fact"]["accuracy"].as_f64().unwrap()
    );
    // The final evaluation is another file, of the model after stage 2.
    let fin = json(&dir.join("eval.json"));
    assert_eq!(fin["overall"]["total"].as_u64().unwrap(), 6);

    // The report's CSV and score table carry it.
    let rows = sweep_cells(&cfg).unwrap();
    let csv = sweep_cells_csv(&rows);
    let header: Vec<&str> = CELLS_CSV_HEADER.split(',').collect();
    let col = header.iter().position(|h| *h == "stage1_score").unwrap();
    let line: Vec<&str> = csv.lines().nth(1).unwrap().split(',').collect();
    assert_eq!(line[col].parse::<f64>().unwrap(), c as f64 / n as f64);
    let table = score_tables(&rows);
    assert!(table.contains(&format!("{:.3} ({:.3})", r.score, c as f64 / n as f64)), "{table}");
    assert!(table.contains("| quecc V = 4 |") && table.contains("| xs |"), "{table}");

    // The written report holds the table and the cell's learning curve, drawn from its loss log.
    sweep::aggregate::write_aggregate(&cfg).unwrap();
    let opts = sweep::report::ReportOptions { sweep: Some(cfg.clone()), bootstrap: 0, ..Default::default() };
    let out = tmp.path().join("report");
    sweep::report::write_report(&cfg.aggregate_path(), &opts, &out).unwrap();
    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(md.contains("## Scores by LLM and visual tokens") && md.contains(&table), "{md}");
    assert!(out.join("curves_object_facts_xs.png").is_file() && out.join("curves_object_facts_xs.svg").is_file());
    assert!(md.contains("![curves_object_facts_xs.png](curves_object_facts_xs.png)"), "{md}");
    let losses = scaling::plot::LearningCurves::smoothed(&[1.0, 3.0, f64::NAN, 5.0, 2.0], 2);
    assert_eq!(losses, vec![(2.0, 2.0), (4.0, 5.0), (5.0, 2.0)]);

    // A cell without stage 1 records none.
    let no_stage1 = std::fs::read_to_string(&path)
        .unwrap()
        .replace("stage1_steps = 3\n", "")
        .replace("results_dir = \"res\"", "results_dir = \"res2\"");
    std::fs::write(&path, no_stage1).unwrap();
    let cfg2 = SweepConfig::from_path(&path).unwrap();
    let r2 = sweep::sweep::run_cell(&cfg2, &TrainRunner::new(&cfg2).unwrap(), 0).unwrap();
    assert!(r2.details.as_ref().unwrap()["stage1_score"].is_null());
    assert!(!cfg2.cells_dir().join(&r2.cell_id).join(STAGE1_EVAL_FILE).exists());
    let table2 = score_tables(&sweep_cells(&cfg2).unwrap());
    assert!(table2.contains(&format!("| {:.3} |\n", r2.score)), "{table2}");
}

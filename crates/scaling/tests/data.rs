//! The scores CSV: the shipped data parse to the paper's table, and every kind of bad input is an error
//! naming file, line and field.
use scaling::data::Dataset;
use scaling::paper;

fn err(csv: &str) -> String {
    Dataset::from_csv_str(csv, "scores.csv").unwrap_err().to_string()
}

#[test]
fn shipped_data_is_the_papers_table() {
    let ds = paper::dataset().unwrap();
    assert_eq!(ds.tasks(), ["ocr", "reasoning"]);
    let r = ds.select(Some("reasoning"), None).unwrap();
    assert_eq!(r.rows.len(), 28);
    assert_eq!(r.llm_sizes(), [0.5, 1.8, 4.0, 7.0]);
    // spot values from the authors' values.py (error = 1 − score)
    let cell = |n: f64, v: f64| r.rows.iter().find(|o| o.llm_params == n && o.visual_tokens == v).unwrap().error;
    assert!((cell(0.5, 1.0) - (1.0 - 0.3855)).abs() < 1e-12);
    assert!((cell(7.0, 576.0) - (1.0 - 0.5354)).abs() < 1e-12);
    assert!((cell(4.0, 64.0) - (1.0 - 0.5023)).abs() < 1e-12);
    let o = ds.select(Some("ocr"), None).unwrap();
    assert_eq!(o.rows.len(), 28);
}

#[test]
fn bad_values_name_line_and_field() {
    let h = "llm_params,visual_tokens,score\n";
    let e = err(&format!("{h}0.5,1,0.4\n0.5,abc,0.4\n"));
    assert!(e.contains("scores.csv:3") && e.contains("visual_tokens") && e.contains("abc"), "{e}");
    let e = err(&format!("{h}0.5,1,NaN\n"));
    assert!(e.contains(":2") && e.contains("score"), "{e}");
    let e = err(&format!("{h}0,1,0.4\n"));
    assert!(e.contains("llm_params") && e.contains("> 0"), "{e}");
    let e = err(&format!("{h}-1,1,0.4\n"));
    assert!(e.contains("llm_params"), "{e}");
    let e = err(&format!("{h}0.5,0,0.4\n"));
    assert!(e.contains("visual_tokens"), "{e}");
    let e = err(&format!("{h}0.5,1.5,0.4\n"));
    assert!(e.contains("visual_tokens"), "{e}");
    let e = err(&format!("{h}0.5,1,1.2\n"));
    assert!(e.contains("score") && e.contains("[0, 1]"), "{e}");
    let e = err(&format!("{h}0.5,1,\n"));
    assert!(e.contains("score") && e.contains("empty"), "{e}");
    let e = err(&format!("{h}0.5,1,0.4\n0.5,4,0.4\n0.5,1,0.41\n"));
    assert!(e.contains("scores.csv:4") && e.contains("duplicate") && e.contains("line 2"), "{e}");
    let e = err(&format!("{h}5e8,1,0.4\n"));
    assert!(e.contains("billions"), "{e}");
    let e = err("llm_params,visual_tokens,score,error\n0.5,1,0.4,0.5\n");
    assert!(e.contains("do not add up"), "{e}");
}

#[test]
fn missing_columns_and_empty_files() {
    let e = err("llm_params,score\n0.5,0.4\n");
    assert!(e.contains("missing column `visual_tokens`"), "{e}");
    let e = err("llm_params,visual_tokens\n0.5,1\n");
    assert!(e.contains("score") && e.contains("error"), "{e}");
    let e = err("llm_params,visual_tokens,score\n");
    assert!(e.contains("no data rows"), "{e}");
    let e = err("llm_params,visual_tokens,score\n0.5,1,0.4,extra\n");
    assert!(e.contains("scores.csv:2"), "{e}");
}

#[test]
fn error_column_tasks_and_round_trip() {
    let ds = Dataset::from_csv_str(
        "visual_tokens,llm_params,error,task,text_tokens\n1,0.5,0.6,a,\n4,0.5,0.55,b,50\n",
        "x.csv",
    )
    .unwrap();
    assert_eq!(ds.rows[0].text_tokens, 0.0);
    assert_eq!(ds.rows[1].text_tokens, 50.0);
    assert!(ds.select(None, None).unwrap_err().to_string().contains("--task"));
    assert!(ds.select(Some("zzz"), None).unwrap_err().to_string().contains("tasks present: a, b"));
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("out.csv");
    ds.write_csv(&p).unwrap();
    let back = Dataset::from_path(&p).unwrap();
    assert_eq!(back.rows, ds.rows);
    let e = Dataset::from_path(&dir.path().join("nope.csv")).unwrap_err().to_string();
    assert!(e.contains("nope.csv"), "{e}");
}

//! `vlmscale reproduce` end to end.
//!
//! * `reproduce_quick_trains_resumes_and_reports_consistent_numbers` runs the real quick sweep (16
//!   cells of actual VLM training + held-out evaluation, sweeps/quick.toml; about a minute on two
//!   shared cores — longer than the usual test budget, as the task allows for this one test): it kills
//!   the first run mid-sweep and checks that the rerun does not retrain finished cells, that a cell
//!   whose result is deleted (with or without its checkpoint) comes back with the same score, and
//!   that the report's numbers agree with each other and with `vlmscale fit` / `vlmscale frontier` run
//!   by hand on the aggregate CSV. It checks the pipeline, not the science.
//! * `reproduce_report_agrees_with_fit_and_frontier_by_hand` does the agreement check on a 3-size grid
//!   with the synthetic test/demo runner (seconds), where every task is fitted and leave-one-size-out
//!   runs, so that path is always exercised whatever the quick training reaches.
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vlmscale"));
    c.current_dir(repo());
    c
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))).unwrap()
}

/// A fit report without the fields that legitimately differ between two runs (wall time, file name).
fn fit_numbers(mut v: Value) -> Value {
    let o = v.as_object_mut().unwrap();
    o.remove("grid_seconds");
    o.remove("source");
    v
}

fn cell_jsons(results: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(results.join("cells"))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| {
                    p.extension().is_some_and(|x| x == "json") && !p.to_string_lossy().ends_with(".failed.json")
                })
                .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
                .collect()
        })
        .unwrap_or_default()
}

/// LLM parameters of a saved checkpoint, counted from the safetensors header (8-byte little-endian
/// header length, then JSON with each tensor's shape): every `model.*` tensor except the compressor
/// + projector (`model.mm_projector.*`), plus `lm_head` if not tied.
fn llm_params_in_checkpoint(dir: &Path) -> usize {
    let b = std::fs::read(dir.join("model.safetensors")).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    let h: Value = serde_json::from_slice(&b[8..8 + n]).unwrap();
    h.as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| {
            (k.starts_with("model.") && !k.starts_with("model.mm_projector.")) || k.starts_with("lm_head.")
        })
        .map(|(_, t)| t["shape"].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).product::<usize>())
        .sum()
}

/// Checks a finished reproduce folder: files, CSV ↔ cell JSONs ↔ cells.csv ↔ fits.json ↔
/// `vlmscale fit` ↔ `vlmscale frontier`. Returns the number of tasks fitted.
fn check_report(results: &Path, cells: usize, trained: bool) -> usize {
    let report = results.join("report");
    for f in ["report.md", "cells.md", "cells.csv", "fits.json", "reproduce.json", "sweep.toml"] {
        assert!(report.join(f).is_file(), "{f} missing");
    }
    assert_eq!(results.join("tower/config.json").is_file(), trained);
    // Aggregate CSV ↔ cell JSONs ↔ cells.csv (scores byte-identical: same shortest round-trip form).
    let csv = std::fs::read_to_string(results.join("aggregate.csv")).unwrap();
    let rows: Vec<Vec<&str>> = csv.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(csv.lines().next().unwrap(), "llm_params,visual_tokens,text_tokens,score,task,compressor");
    assert_eq!(rows.len(), cells);
    let table = std::fs::read_to_string(report.join("cells.csv")).unwrap();
    let trows: Vec<Vec<&str>> = table.lines().skip(1).map(|l| l.split(',').collect()).collect();
    assert_eq!(trows.len(), cells);
    for (r, t) in rows.iter().zip(&trows) {
        let cell = json(&results.join(format!("cells/{}.json", t[1])));
        assert_eq!(t[7], "done");
        assert_eq!((r[0], r[1], r[2], r[3], r[4], r[5]), (t[4], t[5], t[8], t[9], t[2], t[6]), "{r:?} vs {t:?}");
        assert_eq!(r[3].parse::<f64>().unwrap(), cell["score"].as_f64().unwrap());
        assert_eq!(r[0].parse::<f64>().unwrap(), cell["llm_params"].as_f64().unwrap());
        let s = cell["score"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&s));
        // score = the evaluation's overall accuracy, recomputed from eval.json's counts.
        if cell["runner"] == "train" {
            let ev = json(&results.join(format!("cells/{}/eval.json", t[1])));
            let (c, n) = (ev["overall"]["correct"].as_u64().unwrap(), ev["overall"]["total"].as_u64().unwrap());
            assert_eq!(s, c as f64 / n as f64);
        }
    }
    // fits.json ↔ fit_<task>.json ↔ `vlmscale fit` on the aggregate CSV; frontier_<task>.json ↔ `vlmscale frontier`.
    let fits = json(&report.join("fits.json"));
    let md = std::fs::read_to_string(report.join("report.md")).unwrap();
    for c in fits["claims"].as_array().unwrap() {
        let verdict = c["verdict"].as_str().unwrap();
        let word = match verdict {
            "Reproduced" => "**reproduced**",
            "NotReproduced" => "**NOT reproduced**",
            _ => "**not tested**",
        };
        let claim = c["claim"].as_str().unwrap().replace('|', "\\|");
        assert!(md.contains(&format!("| {claim} | {word} |")), "{verdict}: {md}");
    }
    let tasks: Vec<String> = fits["fits"].as_object().unwrap().keys().cloned().collect();
    for task in &tasks {
        let file = report.join(format!("fit_{task}.json"));
        let saved = json(&file);
        assert_eq!(fit_numbers(saved.clone()), fit_numbers(fits["fits"][task].clone()));
        assert!(saved["bootstrap"]["alpha"].is_array(), "bootstrap intervals missing");
        let comp = fits["fit_compressor"][task].as_str().unwrap().to_string();
        let agg = results.join("aggregate.csv");
        let by_hand = ok(&bin()
            .args(["fit", "--data"])
            .arg(&agg)
            .args(["--task", task, "--compressor", &comp, "--bootstrap", "200", "--seed", "0", "--json"])
            .output()
            .unwrap());
        let by_hand: Value = serde_json::from_str(&by_hand).unwrap();
        assert_eq!(
            fit_numbers(by_hand),
            fit_numbers(saved),
            "task {task}: the report's fit differs from `vlmscale fit`"
        );
        // The commands report.md lists are the ones checked here.
        assert!(md.contains(&format!("--task {task} --compressor {comp} --bootstrap 200 --seed 0 --json")), "{md}");
        let tables = json(&report.join(format!("frontier_{task}.json")));
        assert_eq!(tables.as_array().unwrap().len(), 2);
        assert_eq!(tables[0]["text_tokens"].as_f64(), Some(0.0));
        let q_rows: Vec<f64> =
            rows.iter().filter(|r| r[4] == task && r[5] == comp).map(|r| r[2].parse().unwrap()).collect();
        assert_eq!(tables[1]["text_tokens"].as_f64().unwrap(), q_rows.iter().sum::<f64>() / q_rows.len() as f64);
        for t in tables.as_array().unwrap() {
            let range =
                |d: &Value| format!("{},{}", d["range"]["min"].as_f64().unwrap(), d["range"]["max"].as_f64().unwrap());
            let b = t["budgets"].as_array().unwrap();
            // The law as the saved fit report holds it (equal to `vlmscale fit`'s, checked above).
            let out = ok(&bin()
                .args(["frontier", "--fit"])
                .arg(&file)
                .args(["--text-tokens", &t["text_tokens"].as_f64().unwrap().to_string()])
                .args(["--llm-range", &range(&t["sizes"]), "--visual-range", &range(&t["tokens"])])
                .args([
                    "--budget-range",
                    &format!("{},{},{}", b[0].as_f64().unwrap(), b[b.len() - 1].as_f64().unwrap(), b.len()),
                ])
                .arg("--json")
                .output()
                .unwrap());
            let by_hand: Value = serde_json::from_str(&out).unwrap();
            assert_eq!(by_hand["optima"], t["optima"], "task {task} Q = {}", t["text_tokens"]);
            assert_eq!(by_hand["closed_form_visual_tokens"], t["closed_form_visual_tokens"]);
            assert!(
                md.contains(&format!(
                    "vlmscale frontier --fit fit_{task}.json --text-tokens {} ",
                    t["text_tokens"].as_f64().unwrap()
                )),
                "{md}"
            );
            let q = t["text_tokens"].as_f64().unwrap();
            let stem = format!("figure1_{task}_q{}", q.round());
            assert!(
                report.join(format!("{stem}.png")).is_file() && report.join(format!("{stem}.svg")).is_file(),
                "{stem}"
            );
        }
        assert!(md.contains(&format!("## Compute-optimal frontier: `{task}`")));
    }
    for task in fits["fit_errors"].as_object().unwrap().keys() {
        assert!(md.contains(&format!("Task `{task}`: not fitted")), "{md}");
    }
    tasks.len()
}

#[test]
fn reproduce_quick_trains_resumes_and_reports_consistent_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("quick");
    // 1. Start, kill once a few cells have finished.
    let mut child = bin()
        .args(["reproduce", "--quick", "--jobs", "2", "--out"])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..3000 {
        if cell_jsons(&out).len() >= 3 || child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = cell_jsons(&out);
    assert!((3..16).contains(&before.len()), "{} cells finished before the kill", before.len());
    assert!(!out.join("report/report.md").exists());

    // 2. Rerun: finished cells are skipped (their JSONs, wall times included, are untouched).
    let text = ok(&bin().args(["reproduce", "--quick", "--out"]).arg(&out).output().unwrap());
    assert!(
        text.contains(&format!("{} already finished (skipped), {} ran now, 0 failed", before.len(), 16 - before.len())),
        "{text}"
    );
    let after = cell_jsons(&out);
    assert_eq!(after.len(), 16);
    for (name, bytes) in &before {
        assert_eq!(&after[name], bytes, "{name} was rewritten");
    }
    assert!(text.contains("claims of the paper:") && text.contains("report: "), "{text}");
    let fitted = check_report(&out, 16, true);
    let csv = std::fs::read(out.join("aggregate.csv")).unwrap();

    // N is the trained LLM's parameter count: count it from a checkpoint's tensors.
    for (id, size) in [("sort_of_clevr.xs.v1.quecc", "xs"), ("fine_detail.s.v4.quecc-noquery", "s")] {
        let n = llm_params_in_checkpoint(&out.join(format!("cells/{id}/model")));
        let r = json(&out.join(format!("cells/{id}.json")));
        assert_eq!(r["llm_params"].as_f64().unwrap(), n as f64 / 1e9, "{size}");
        assert_eq!(r["details"]["llm_parameters"].as_u64(), Some(n as u64));
    }

    // 3. A deleted result (checkpoint kept: re-evaluated) and a deleted cell (retrained from scratch)
    //    come back with the same scores: the final CSV is byte-identical.
    let a = "sort_of_clevr.s.v1.quecc";
    let b = "fine_detail.xs.v4.quecc";
    std::fs::remove_file(out.join(format!("cells/{a}.json"))).unwrap();
    std::fs::remove_file(out.join(format!("cells/{b}.json"))).unwrap();
    std::fs::remove_dir_all(out.join(format!("cells/{b}"))).unwrap();
    let text = ok(&bin().args(["reproduce", "--quick", "--out"]).arg(&out).output().unwrap());
    assert!(text.contains("14 already finished (skipped), 2 ran now, 0 failed"), "{text}");
    assert_eq!(std::fs::read(out.join("aggregate.csv")).unwrap(), csv);
    let ra = json(&out.join(format!("cells/{a}.json")));
    assert_eq!(ra["details"]["resumed_from"].as_u64(), Some(ra["details"]["train_steps"].as_u64().unwrap()), "{ra}");
    assert_eq!(check_report(&out, 16, true), fitted);

    // 4. Changing a training setting makes the finished cells stale: an error naming the setting;
    //    nothing is retrained, reused or overwritten (cells, CSV, report).
    let (cells_now, report_now) = (cell_jsons(&out), std::fs::read(out.join("report/report.md")).unwrap());
    let cfg = dir.path().join("changed.toml");
    // The quick config's [train] table sets lr: give it another value (the tower's [vision] stays).
    let text = std::fs::read_to_string(repo().join("sweeps/quick.toml")).unwrap();
    let start = text.find("\n[train]\n").expect("quick.toml has a [train] table");
    let end = start + 1 + text[start + 1..].find("\n[").unwrap_or(text.len() - start - 1);
    let train = text[start..end].replace("\nlr = ", "\nlr = 2.5e-3\n# was: lr = ");
    assert!(train.contains("# was: lr = "), "quick.toml's [train] sets no lr: {train}");
    let text = format!("{}{train}{}", &text[..start], &text[end..]);
    std::fs::write(&cfg, text).unwrap();
    let o = bin().args(["reproduce", "--config"]).arg(&cfg).arg("--out").arg(&out).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("16 finished cells") && stderr.contains("\"lr\":0.0025"), "{stderr}");
    assert_eq!(cell_jsons(&out), cells_now);
    assert_eq!(std::fs::read(out.join("aggregate.csv")).unwrap(), csv);
    assert_eq!(std::fs::read(out.join("report/report.md")).unwrap(), report_now);
}

const THREE_SIZES: &str = r#"
name = "synthetic3"
results_dir = "res"
visual_tokens = [1, 4, 16, 64]
compressors = ["quecc", "quecc-noquery"]
tasks = ["sort_of_clevr", "fine_detail"]
[compressor_visual_tokens]
quecc-noquery = [1, 4]
[[llm]]
name = "xs"
[[llm]]
name = "s"
[[llm]]
name = "m"
"#;

#[test]
fn reproduce_bad_input_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let o = bin().args(["reproduce", "--config"]).arg(dir.path().join("missing.toml")).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.toml"));
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, THREE_SIZES.replace("\"quecc\",", "\"quec\",")).unwrap();
    let o = bin().args(["reproduce", "--config"]).arg(&bad).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("bad.toml") && e.contains("compressors[0]") && e.contains("quec"), "{e}");
    let o = bin().args(["reproduce", "--quick", "--jobs", "0"]).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn reproduce_report_agrees_with_fit_and_frontier_by_hand() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("s3.toml");
    std::fs::write(&cfg, THREE_SIZES).unwrap();
    let out = dir.path().join("res");
    let o = bin().args(["reproduce", "--runner", "synthetic", "--config"]).arg(&cfg).output().unwrap();
    let text = ok(&o);
    assert!(text.contains("SYNTHETIC") && text.contains("36 ran now, 0 failed"), "{text}");
    assert_eq!(check_report(&out, 36, false), 2);
    let fits = json(&out.join("report/fits.json"));
    for task in ["sort_of_clevr", "fine_detail"] {
        assert!(fits["fits"][task]["leave_one_n_out"]["mean_abs_error"].is_number(), "{task}");
    }
    let md = std::fs::read_to_string(out.join("report/report.md")).unwrap();
    assert!(md.contains("SYNTHETIC"));
}

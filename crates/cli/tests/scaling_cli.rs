//! The scaling commands end to end through the binary: JSON shapes, exit codes, atomic outputs.
use std::path::Path;
use std::process::{Command, Output};

fn vlmscale(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vlmscale")).args(args).output().expect("binary runs")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("valid JSON on stdout")
}

#[test]
fn fit_json_has_grid_refined_and_intervals() {
    let v = json(&vlmscale(&["fit", "--json", "--bootstrap", "50"]));
    for entry in ["grid", "refined"] {
        for key in ["A", "alpha", "beta", "D", "loss"] {
            assert!(v[entry][key].is_number(), "{entry}.{key} missing: {}", v[entry]);
        }
    }
    let (ga, gb) = (v["grid"]["alpha"].as_f64().unwrap(), v["grid"]["beta"].as_f64().unwrap());
    assert!((ga - 0.077).abs() <= 0.005 && (gb - 0.015).abs() <= 0.003, "α {ga}, β {gb}");
    assert!(v["refined"]["loss"].as_f64() <= v["grid"]["loss"].as_f64());
    let lo_hi = &v["bootstrap"]["alpha"];
    assert!(lo_hi[0].as_f64().unwrap() < lo_hi[1].as_f64().unwrap());
    assert!(v["leave_one_n_out"]["mean_abs_error"].is_number());
}

#[test]
fn fit_table_is_readable() {
    let out = vlmscale(&["fit", "--bootstrap", "20"]);
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    for needle in ["grid", "refined", "huber", "R²", "α/β", "bootstrap", "leave-one-N-out", "bounded"] {
        assert!(s.contains(needle), "missing {needle} in\n{s}");
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}

#[test]
fn bad_csv_exits_2_naming_file_line_field() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "bad.csv", "llm_params,visual_tokens,score\n0.5,1,0.4\n0.5,4,oops\n");
    let out = vlmscale(&["fit", "--data", &p]);
    assert_eq!(out.status.code(), Some(2));
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(e.contains("bad.csv:3") && e.contains("score") && e.contains("oops"), "{e}");
    assert!(!e.contains("panicked"));
    // fewer cells than parameters
    let p = write(dir.path(), "few.csv", "llm_params,visual_tokens,score\n0.5,1,0.4\n1,4,0.5\n2,4,0.5\n");
    let out = vlmscale(&["fit", "--data", &p]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fewer than the 4 parameters"));
    // missing file
    let out = vlmscale(&["fit", "--data", "/nonexistent/x.csv"]);
    assert_eq!(out.status.code(), Some(2));
    // bad CLI value
    let out = vlmscale(&["frontier", "--budget", "-5"]);
    assert_eq!(out.status.code(), Some(2));
    let out = vlmscale(&["frontier", "--budget", "abc"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn user_data_fit_and_saved_fit_feed_the_frontier() {
    let dir = tempfile::tempdir().unwrap();
    // the shipped reasoning scores, as a user file
    let csv = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/paper/reasoning.csv")).unwrap();
    let p = write(dir.path(), "mine.csv", &csv);
    let fit_path = dir.path().join("fit.json").display().to_string();
    let v = json(&vlmscale(&[
        "fit",
        "--data",
        &p,
        "--task",
        "reasoning",
        "--json",
        "--bootstrap",
        "0",
        "--out",
        &fit_path,
    ]));
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&fit_path).unwrap()).unwrap();
    assert_eq!(v["refined"], saved["refined"]);
    // frontier from the saved fit, Q = 50: V* equals β·Q/(α−β) of that law
    let f = json(&vlmscale(&["frontier", "--fit", &fit_path, "--text-tokens", "50", "--budget", "1e12", "--json"]));
    let (a, b) = (v["refined"]["alpha"].as_f64().unwrap(), v["refined"]["beta"].as_f64().unwrap());
    let closed = b * 50.0 / (a - b);
    let got = f["optima"][0]["visual_tokens"].as_f64().unwrap();
    assert!((got - closed).abs() / closed < 0.01, "{got} vs {closed}");
    // a failing run leaves the saved file untouched
    let bad = write(dir.path(), "bad.csv", "llm_params,visual_tokens,score\n0.5,1,2\n");
    let before = std::fs::read(&fit_path).unwrap();
    assert_eq!(vlmscale(&["fit", "--data", &bad, "--out", &fit_path]).status.code(), Some(2));
    assert_eq!(std::fs::read(&fit_path).unwrap(), before);
    // a malformed fit JSON is an error naming the file
    let broken = write(dir.path(), "broken.json", "{\"grid\": 1}");
    let out = vlmscale(&["frontier", "--fit", &broken]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.json"));
}

#[test]
fn frontier_with_the_papers_exponents() {
    let f = json(&vlmscale(&[
        "frontier",
        "--A",
        "0.6",
        "--alpha",
        "0.077",
        "--beta",
        "0.015",
        "--D",
        "0.03",
        "--text-tokens",
        "50",
        "--budget",
        "1e13",
        "--json",
    ]));
    let v = f["optima"][0]["visual_tokens"].as_f64().unwrap();
    assert!((v - 12.097).abs() < 0.15, "V* = {v}");
    let f = json(&vlmscale(&["frontier", "--text-tokens", "0", "--budget", "1e12", "--json"]));
    assert!((f["optima"][0]["visual_tokens"].as_f64().unwrap() - 1.0).abs() < 1e-6);
}

#[test]
fn flops_paper_and_exact() {
    let v =
        json(&vlmscale(&["flops", "--llm-params", "7e9", "--visual-tokens", "16", "--text-tokens", "50", "--json"]));
    assert_eq!(v["flops"].as_f64().unwrap(), 2.0 * 7e9 * 66.0);
    let v = json(&vlmscale(&[
        "flops",
        "--llm-params",
        "7e9",
        "--visual-tokens",
        "16",
        "--text-tokens",
        "50",
        "--exact",
        "--json",
    ]));
    let terms = v["breakdown"]["terms"].as_array().unwrap();
    let sum: f64 = terms.iter().map(|t| t["flops"].as_f64().unwrap()).sum();
    assert!((sum - v["total"].as_f64().unwrap()).abs() < 1.0);
    let out = vlmscale(&["flops", "--exact", "--preset", "nope", "--visual-tokens", "1"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn plot_writes_both_figures() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display().to_string();
    let out = vlmscale(&["plot", "--out-dir", &d]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["figure1_q0.png", "figure1_q0.svg", "figure1_q50.png", "figure1_q50.svg"] {
        assert!(dir.path().join(f).metadata().unwrap().len() > 1000, "{f}");
    }
}

#[test]
fn latency_frontier_flags_the_flops_models_blind_spot() {
    let dir = tempfile::tempdir().unwrap();
    // Vision dominates: 2.8 s per image. A 5 s budget leaves 2.2 s for the LLM.
    let prof = write(
        dir.path(),
        "prof.json",
        r#"{"vision_ms": 2800, "compressor_ms": 0, "prefill_ms_per_token_per_billion": 10, "decode_ms_per_token_per_billion": 100}"#,
    );
    let v = json(&vlmscale(&[
        "frontier",
        "--latency-profile",
        &prof,
        "--latency-budget",
        "5",
        "--text-tokens",
        "50",
        "--llm-params",
        "0.5,1.8,4,7,14",
        "--visual-tokens",
        "1,4,16,36,64,144,576",
        "--json",
    ]));
    let row = &v["rows"][0];
    let o = &row["latency_optimum"];
    let ttft = o["cost"].as_f64().unwrap();
    assert!(ttft <= 5.0, "{row}");
    // the FLOPs model spends all 5 s in the LLM and overshoots once the vision tower is counted
    assert_eq!(row["flops_model_agrees"], false);
    assert!(row["flops_model_ttft_s"].as_f64().unwrap() > 5.0);
    // without a vision cost, the two models coincide
    let prof0 = write(
        dir.path(),
        "prof0.json",
        r#"{"vision_ms": 0, "prefill_ms_per_token_per_billion": 10, "decode_ms_per_token_per_billion": 100}"#,
    );
    let v = json(&vlmscale(&[
        "frontier",
        "--latency-profile",
        &prof0,
        "--latency-budget",
        "5",
        "--text-tokens",
        "50",
        "--llm-params",
        "0.5,1.8,4,7,14",
        "--visual-tokens",
        "1,4,16,36,64,144,576",
        "--json",
    ]));
    assert_eq!(v["rows"][0]["flops_model_agrees"], true);
    // A profile of several weight formats: each format's optimum within the budget, the best one named;
    // a faster format affords at least as good a choice.
    let prof_f = write(
        dir.path(),
        "prof_formats.json",
        r#"{"vision_ms": 0, "prefill_ms_per_token_per_billion": 10, "decode_ms_per_token_per_billion": 100,
            "formats": [{"weights": "bf16", "prefill_ms_per_token_per_billion": 10, "decode_ms_per_token_per_billion": 100},
                        {"weights": "q4_0", "prefill_ms_per_token_per_billion": 3, "decode_ms_per_token_per_billion": 30}]}"#,
    );
    let args = |p: &str| {
        vec![
            "frontier".to_string(),
            "--latency-profile".into(),
            p.into(),
            "--latency-budget".into(),
            "5".into(),
            "--text-tokens".into(),
            "50".into(),
            "--llm-params".into(),
            "0.5,1.8,4,7,14".into(),
            "--visual-tokens".into(),
            "1,4,16,36,64,144,576".into(),
        ]
    };
    let mut a = args(&prof_f);
    a.push("--json".into());
    let v = json(&vlmscale(&a.iter().map(String::as_str).collect::<Vec<_>>()));
    let row = &v["rows"][0];
    let by = row["by_format"].as_array().unwrap();
    assert_eq!(by.len(), 2, "{row}");
    assert_eq!(by[0]["weights"], "bf16");
    // bf16's rates are the top-level ones: the same optimum as the main table
    assert_eq!(by[0]["optimum"], row["latency_optimum"]);
    let err = |i: usize| by[i]["optimum"]["predicted_error"].as_f64().unwrap();
    assert!(by.iter().all(|c| c["optimum"]["cost"].as_f64().unwrap() <= 5.0), "{row}");
    assert!(err(1) < err(0), "{row}");
    assert_eq!(row["best_format"], "q4_0");
    let text = vlmscale(&args(&prof_f).iter().map(String::as_str).collect::<Vec<_>>());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("By weight format") && text.contains("← best") && text.contains("ignores quantisation"),
        "{text}"
    );
    // a bad profile is exit code 2
    let bad = write(dir.path(), "bad.json", "{}");
    assert_eq!(vlmscale(&["frontier", "--latency-profile", &bad, "--latency-budget", "5"]).status.code(), Some(2));
}

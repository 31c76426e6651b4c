//! `vlmscale score` through the binary, on the eval crate's parity fixtures: the table and the JSON
//! carry the reference scorers' numbers (tests/fixtures/*/expected.json there); bad input exits 2
//! naming file and line.
use std::path::PathBuf;
use std::process::{Command, Output};

fn vlmscale(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vlmscale")).args(args).output().expect("binary runs")
}

fn fx(p: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../eval/tests/fixtures").join(p).to_string_lossy().into_owned()
}

fn expected(p: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(fx(p)).unwrap()).unwrap()
}

#[test]
fn every_benchmark_scores_its_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, Vec<String>); 5] = [
        ("pope", vec![fx("pope/answers.jsonl"), fx("pope/coco"), "--questions".into(), fx("pope/questions.jsonl")]),
        ("gqa", vec![fx("gqa/answers.jsonl"), fx("gqa/testdev_balanced_questions.json")]),
        ("scienceqa", vec![fx("scienceqa/answers.jsonl"), fx("scienceqa")]),
        ("textvqa", vec![fx("textvqa/answers.jsonl"), fx("textvqa/TextVQA_0.5.1_val.json")]),
        ("mme", vec![fx("mme/answers.jsonl"), fx("mme/MME_Benchmark_release_version")]),
    ];
    for (bench, rest) in &cases {
        let json = dir.path().join(format!("{bench}.json"));
        let mut args = vec!["score", bench, "--answers", &rest[0], "--annotations", &rest[1]];
        args.extend(rest[2..].iter().map(String::as_str));
        let json_s = json.to_string_lossy().into_owned();
        args.extend(["--json", json_s.as_str()]);
        let out = vlmscale(&args);
        assert!(out.status.success(), "{bench}: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        assert_eq!(v["benchmark"], *bench);
        let s = &v["scores"];
        match *bench {
            "pope" => {
                let e = expected("pope/expected.json");
                assert_eq!(s["categories"][0]["f1"], e["categories"]["adversarial"]["f1"]);
                assert!(stdout.contains("adversarial"), "{stdout}");
            }
            "gqa" => {
                let e = expected("gqa/expected.json");
                assert_eq!(s["accuracy"], e["accuracy"]);
                assert!(stdout.contains(&format!("{:.2}", e["accuracy"].as_f64().unwrap())), "{stdout}");
            }
            "scienceqa" => assert_eq!(s["accuracy"], expected("scienceqa/expected.json")["accuracy"]),
            "textvqa" => assert_eq!(s["accuracy"], expected("textvqa/expected.json")["accuracy"]),
            "mme" => {
                let e = expected("mme/expected.json");
                assert_eq!((&s["perception"], &s["cognition"]), (&e["perception"], &e["cognition"]));
            }
            _ => unreachable!(),
        }
    }
}

fn fails_with(args: &[&str], needle: &str) {
    let out = vlmscale(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn bad_input_exits_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    let good = std::fs::read_to_string(fx("gqa/answers.jsonl")).unwrap();
    let first = good.lines().next().unwrap();
    std::fs::write(&bad, format!("{first}\n{{\"question_id\": \"201\", \"text\": \n")).unwrap();
    let bad_s = bad.to_string_lossy().into_owned();
    fails_with(
        &["score", "gqa", "--answers", &bad_s, "--annotations", &fx("gqa/testdev_balanced_questions.json")],
        &format!("{bad_s}:2:"),
    );

    let empty = dir.path().join("empty.jsonl");
    std::fs::write(&empty, "").unwrap();
    fails_with(
        &[
            "score",
            "mme",
            "--answers",
            &empty.to_string_lossy(),
            "--annotations",
            &fx("mme/MME_Benchmark_release_version"),
        ],
        "no answers",
    );

    // POPE without its question file; GQA answers that miss balanced questions.
    fails_with(
        &["score", "pope", "--answers", &fx("pope/answers.jsonl"), "--annotations", &fx("pope/coco")],
        "--questions",
    );
    let one = dir.path().join("one.jsonl");
    std::fs::write(&one, format!("{first}\n")).unwrap();
    fails_with(
        &[
            "score",
            "gqa",
            "--answers",
            &one.to_string_lossy(),
            "--annotations",
            &fx("gqa/testdev_balanced_questions.json"),
        ],
        "no answer for",
    );
}

/// Answers the reference scorers ignore because their question is not in the ground truth are named
/// by file and line on stderr, and the scores stay the reference's. In the fixtures (see
/// make_fixtures.py): GQA line 11 answers question "999", which the questions file lacks, and line
/// 12 answers the integer id 205 (the questions' ids are strings); ScienceQA line 10 answers the
/// integer id 11 and line 13 problem "13", which is in the `val` split, not `test`.
#[test]
fn answers_for_questions_not_in_the_ground_truth_are_named_by_line() {
    let cases = [
        ("gqa", fx("gqa/answers.jsonl"), fx("gqa/testdev_balanced_questions.json"), vec![(11, "\"999\""), (12, "205")]),
        ("scienceqa", fx("scienceqa/answers.jsonl"), fx("scienceqa"), vec![(10, "11"), (13, "\"13\"")]),
    ];
    for (bench, answers, annotations, want) in cases {
        let out = vlmscale(&["score", bench, "--answers", &answers, "--annotations", &annotations]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{bench}: {err}");
        let warnings: Vec<&str> = err.lines().filter(|l| l.starts_with("warning: ")).collect();
        assert_eq!(warnings.len(), want.len(), "{bench}: {err}");
        for (w, (line, id)) in warnings.iter().zip(&want) {
            assert!(w.starts_with(&format!("warning: {answers}:{line}: question_id {id} is not a ")), "{bench}: {w}");
            assert!(w.contains(&annotations) && w.contains("ignored"), "{bench}: {w}");
        }
    }
}

/// Ground truth without any entry (an empty label file, `{}`, an empty `data` array, a split without
/// problems, a folder without question files, an empty question file) stops scoring with exit 2 and
/// names the empty file or folder; the `--json` output of an earlier run is left as it was.
#[test]
fn empty_ground_truth_exits_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_string_lossy().into_owned();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, text).unwrap();
    };
    write("pope_empty/coco_pope_random.json", "");
    std::fs::create_dir_all(dir.path().join("pope_none")).unwrap();
    write("gqa.json", "{}\n");
    write("textvqa.json", r#"{"dataset_type": "val", "data": []}"#);
    write("sqa/problems.json", "{}");
    write("sqa/pid_splits.json", r#"{"test": [], "val": []}"#);
    std::fs::create_dir_all(dir.path().join("mme/count")).unwrap();
    write("questions.jsonl", "\n");
    let earlier = p("earlier.json");
    write("earlier.json", "{\"kept\": true}\n");
    let pope_q = fx("pope/questions.jsonl");
    let cases: Vec<(&str, String, String, Vec<String>)> = vec![
        ("pope", fx("pope/answers.jsonl"), p("pope_empty"), vec!["--questions".into(), pope_q.clone()]),
        ("pope", fx("pope/answers.jsonl"), p("pope_none"), vec!["--questions".into(), pope_q]),
        ("gqa", fx("gqa/answers.jsonl"), p("gqa.json"), vec![]),
        ("textvqa", fx("textvqa/answers.jsonl"), p("textvqa.json"), vec![]),
        ("scienceqa", fx("scienceqa/answers.jsonl"), p("sqa"), vec![]),
        ("mme", fx("mme/answers.jsonl"), p("mme"), vec![]),
    ];
    let names =
        ["pope_empty/coco_pope_random.json", "pope_none", "gqa.json", "textvqa.json", "sqa/pid_splits.json", "mme"];
    for ((bench, answers, truth, extra), name) in cases.iter().zip(names) {
        let mut args = vec!["score", bench, "--answers", answers, "--annotations", truth, "--json", &earlier];
        args.extend(extra.iter().map(String::as_str));
        fails_with(&args, &format!("{}: no ", p(name)));
    }
    // POPE's question file empty.
    fails_with(
        &[
            "score",
            "pope",
            "--answers",
            &fx("pope/answers.jsonl"),
            "--annotations",
            &fx("pope/coco"),
            "--questions",
            &p("questions.jsonl"),
            "--json",
            &earlier,
        ],
        &format!("{}: no questions", p("questions.jsonl")),
    );
    assert_eq!(std::fs::read_to_string(&earlier).unwrap(), "{\"kept\": true}\n");
}

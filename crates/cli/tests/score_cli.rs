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

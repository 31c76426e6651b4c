//! `vlmscale train vision|vlm` and `vlmscale eval` end to end on a tiny run (the science is tested in
//! the train crate; this checks the wiring, the outputs and the exit codes).
use std::process::{Command, Output};

fn vlmscale(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vlmscale")).args(args).output().expect("binary runs")
}

#[test]
fn tiny_train_then_eval() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s).display().to_string();
    let out = vlmscale(&["train", "vision", "--out", &p("tower"), "--steps", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = vlmscale(&[
        "train",
        "vlm",
        "--tower",
        &p("tower"),
        "--out",
        &p("vlm"),
        "--steps",
        "2",
        "--llm",
        "xs",
        "--visual-tokens",
        "4",
        "--compressor",
        "avgpool",
        "--images",
        "7",
        "--threads",
        "2",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // --images reaches the generated data set (recorded in the resume fingerprint)
    let state = std::fs::read_to_string(dir.path().join("vlm").join("trainer_state.json")).unwrap();
    assert!(state.contains("images: 7"), "{state}");
    // the checkpoint is in the LLaVA layout the engine loads
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(dir.path().join("vlm").join(f).exists(), "{f}");
    }
    let out = vlmscale(&["data", "make", "--images", "3", "--seed", "5", "--start", "1000000", "--out", &p("test")]);
    assert!(out.status.success());
    let out = vlmscale(&[
        "eval",
        "--model",
        &p("vlm"),
        "--data",
        &p("test/sort_of_clevr_s5.jsonl"),
        "--out",
        &p("eval.json"),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("eval.json")).unwrap()).unwrap();
    assert_eq!(v["overall"]["total"].as_u64(), Some(18)); // 3 images × 6 question families
    assert!(v["families"]["closest"]["total"].as_u64().is_some());
    faults_on_a_trained_checkpoint(dir.path());
}

/// Fault cases that need a checkpoint `train vlm` wrote (`root/vlm`, with the held-out split in
/// `root/test`).
fn faults_on_a_trained_checkpoint(root: &std::path::Path) {
    use std::os::unix::fs::PermissionsExt;
    let p = |s: &str| root.join(s).display().to_string();
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();

    // The weights get the mode of any new file (0666 less the umask), not a scratch file's 0600.
    std::fs::write(root.join("plain"), b"x").unwrap();
    let mode = |f: &str| std::fs::metadata(root.join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("vlm/model.safetensors"), mode("plain"), "model.safetensors");

    // eval --out onto an existing folder: refused before any work, nothing left behind.
    std::fs::create_dir(root.join("DIR")).unwrap();
    let before: std::collections::BTreeSet<_> =
        std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name()).collect();
    let o = vlmscale(&["eval", "--model", &p("vlm"), "--data", &p("test/sort_of_clevr_s5.jsonl"), "--out", &p("DIR")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains(&p("DIR")) && stderr(&o).contains("folder"), "{}", stderr(&o));
    let after: std::collections::BTreeSet<_> =
        std::fs::read_dir(root).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(before, after);

    // An empty held-out file is named with a line.
    std::fs::write(root.join("test/empty.jsonl"), "").unwrap();
    let o = vlmscale(&["eval", "--model", &p("vlm"), "--data", &p("test/empty.jsonl")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains(&format!("{}:1:", p("test/empty.jsonl"))), "{}", stderr(&o));

    // A question longer than the context window is named by file and line (line 2 here).
    let jsonl = std::fs::read_to_string(root.join("test/sort_of_clevr_s5.jsonl")).unwrap();
    let lines: Vec<&str> = jsonl.lines().collect();
    let long = lines[1].replacen("<image>\\n", &format!("<image>\\n{}", "the red object ".repeat(2000)), 1);
    assert_ne!(long, lines[1], "the question was not lengthened");
    std::fs::write(root.join("test/long.jsonl"), format!("{}\n{long}\n", lines[0])).unwrap();
    let o = vlmscale(&["eval", "--model", &p("vlm"), "--data", &p("test/long.jsonl")]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains(&format!("{}:2:", p("test/long.jsonl"))) && e.contains("context window"), "{e}");

    // A user-typed <image> is moved to the front, as LLaVA does: the same answer as without it.
    let image = root.join("test/images").read_dir().unwrap().next().unwrap().unwrap().path();
    let gen = |q: &str| {
        let o = vlmscale(&["generate", "--model", &p("vlm"), "--image", &image.display().to_string(), "--prompt", q]);
        assert!(o.status.success(), "{q}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().to_string()
    };
    assert_eq!(gen("<image>\nWhat is the shape of the red object?"), gen("What is the shape of the red object?"));
}

#[test]
fn bad_training_input_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s).display().to_string();
    let out = vlmscale(&["train", "vlm", "--tower", &p("missing"), "--out", &p("vlm"), "--compressor", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope"));
    // Names are checked by the parser, which lists the accepted ones: `none` is a compressor of the
    // engine, not one the trainer trains; presets and tasks likewise.
    for (args, listed) in [
        (vec!["train", "vlm", "--tower", "t", "--out", "o", "--compressor", "none"], "quecc-noquery"),
        (vec!["train", "vlm", "--tower", "t", "--out", "o", "--llm", "xxl"], "[possible values: xs, s, m, l]"),
        (vec!["train", "llm", "--out", "o", "--llm", "xxl"], "[possible values: xs, s, m, l]"),
        (
            vec!["data", "make", "--out", "o", "--task", "ocr"],
            "[possible values: sort_of_clevr, fine_detail, object_facts]",
        ),
    ] {
        let out = vlmscale(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(listed), "{args:?}: {err}");
    }
    let out = vlmscale(&["eval", "--model", &p("missing"), "--data", &p("missing.jsonl")]);
    assert_eq!(out.status.code(), Some(2));
    // --images only applies to generated data
    let out = vlmscale(&[
        "train",
        "vlm",
        "--tower",
        &p("t"),
        "--out",
        &p("vlm"),
        "--compressor",
        "avgpool",
        "--data",
        &p("d.jsonl"),
        "--images",
        "5",
    ]);
    assert_eq!(out.status.code(), Some(2));
    // --fact-images adds generated images too; --fact-split needs it
    for extra in [vec!["--data", "d.jsonl", "--fact-images", "5"], vec!["--fact-split", "all"]] {
        let mut args = vec!["train", "vlm", "--tower", "t", "--out", "o"];
        args.extend(&extra);
        let out = vlmscale(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{extra:?}: {err}");
        assert!(err.contains("--fact-"), "{extra:?}: {err}");
    }
}

#[test]
fn train_llm_defaults_to_the_documented_recipe_and_scales_its_curriculum_with_steps() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("llm").display().to_string();
    let args = ["train", "llm", "--llm", "xs", "--out", &out_dir, "--steps", "20", "--scenes", "12"];
    let out = vlmscale(&[&args[..], &["--fine-detail-scenes", "4", "--eval-scenes", "2"]].concat());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("llm/manifest.json")).unwrap()).unwrap();
    let c = &manifest["config"];
    // Single-turn documents, sentence captions, lr 1e-3, and the object ramp over 15 % of 20 steps.
    assert_eq!((c["questions_per_document"].as_u64(), c["object_ramp_steps"].as_u64()), (Some(1), Some(3)));
    assert_eq!((c["lr"].as_f64(), c["caption"].as_str()), (Some(1e-3), Some("sentence")));
    // 12 scenes × 6 single-question documents + 4 fine-detail documents.
    assert_eq!(manifest["documents"].as_u64(), Some(12 * 6 + 4));
    // A ramp longer than the run is refused by name, exit 2.
    let bad = vlmscale(&["train", "llm", "--llm", "xs", "--out", &out_dir, "--steps", "5", "--object-ramp-steps", "9"]);
    assert_eq!(bad.status.code(), Some(2), "{}", String::from_utf8_lossy(&bad.stderr));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("object_ramp_steps"));
}

/// `data make --digits MIN,MAX` sets the fine-detail number's length: every answer of the split is a
/// number of that many digits (each a patch of one row), counted from the JSONL; bad ranges exit 2.
#[test]
fn data_make_digits_sets_the_number_length() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().to_str().unwrap();
    let made = vlmscale(&["data", "make", "--task", "fine_detail", "--digits", "6,8", "--images", "60", "--out", out]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let text = std::fs::read_to_string(dir.path().join("fine_detail_s0.jsonl")).unwrap();
    let mut lengths = std::collections::BTreeSet::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let answer = v["conversations"][1]["value"].as_str().unwrap();
        assert!(answer.chars().all(|c| c.is_ascii_digit()), "{answer}");
        lengths.insert(answer.len());
    }
    assert_eq!(lengths.into_iter().collect::<Vec<_>>(), [6, 7, 8]);
    for (digits, says) in [("6,9", "do not fit"), ("6", "MIN,MAX"), ("4,2", "below"), ("0,2", "digits")] {
        let r = vlmscale(&["data", "make", "--task", "fine_detail", "--digits", digits, "--out", out]);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{digits}: {err}");
        assert!(err.contains(says), "{digits}: {err}");
    }
    let r = vlmscale(&["data", "make", "--digits", "2,3", "--out", out]);
    assert_eq!(r.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&r.stderr).contains("fine_detail only"));
}

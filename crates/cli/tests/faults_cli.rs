//! Fault cases through the binary: bad values and hostile inputs exit with code 2 and a message that
//! names the flag, file, field or line at fault; unbounded requests are refused at once; a long
//! prompt can come from a file. The checkpoint cases start from the engine crate's tiny QueCC
//! fixture (crates/engine/tests/fixtures/vlm/quecc_qwen2) copied and damaged in a temporary folder.
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vlmscale"))
}

/// Runs `vlmscale args`, killing it (and failing) after `limit`.
fn run_within(args: &[&str], limit: Duration) -> Output {
    let mut child = bin().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("the binary starts");
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if t0.elapsed() > limit {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("`vlmscale {}` still running after {limit:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn run(args: &[&str]) -> Output {
    run_within(args, Duration::from_secs(50))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts exit code 2 and that stderr contains every needle; returns stderr.
fn exits_2(o: &Output, needles: &[&str]) -> String {
    let e = stderr(o);
    assert_eq!(o.status.code(), Some(2), "exit {:?}: {e}", o.status);
    for n in needles {
        assert!(e.contains(n), "stderr lacks {n:?}: {e}");
    }
    e
}

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/fixtures/vlm/quecc_qwen2")
}

fn image() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../engine/tests/fixtures/images/chelsea.png").display().to_string()
}

/// A copy of the fixture checkpoint in `root/name` with `edit` applied to its config.json.
fn damaged(root: &Path, name: &str, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> String {
    let dir = root.join(name);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["model.safetensors", "tokenizer.json"] {
        std::fs::copy(fixture().join(f), dir.join(f)).unwrap();
    }
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture().join("config.json")).unwrap()).unwrap();
    edit(cfg.as_object_mut().unwrap());
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&cfg).unwrap()).unwrap();
    dir.display().to_string()
}

fn generate(model: &str, extra: &[&str]) -> Output {
    let image = image();
    let mut args = vec!["generate", "--model", model, "--image", &image, "--max-new-tokens", "4"];
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn an_empty_tokenizer_vocabulary_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let m = damaged(dir.path(), "m", |_| {});
    let path = Path::new(&m).join("tokenizer.json");
    let mut tok: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    tok["model"]["vocab"] = serde_json::json!({});
    tok["model"]["merges"] = serde_json::json!([]);
    std::fs::write(&path, tok.to_string()).unwrap();
    exits_2(&generate(&m, &["--prompt", "What is shown?"]), &[&path.display().to_string(), "vocab"]);
}

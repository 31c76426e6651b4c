//! Fault cases through the binary: bad values and hostile inputs exit with code 2 and a message that
//! names the flag, file, field or line at fault; unbounded requests are refused at once; a long
//! prompt can come from a file. The checkpoint cases start from the engine crate's tiny QueCC
//! fixture (crates/engine/tests/fixtures/vlm/quecc_qwen2) copied and damaged in a temporary folder.
//!
//! Issue 16's fault classes and where each is covered at the CLI level (file::test):
//! - damaged safetensors (truncated, header length beyond the file, bad JSON header): here,
//!   `damaged_safetensors_exit_2_naming_the_file`;
//! - image bombs (a PNG header claiming 100000×100000 pixels): here, `image_bombs_are_refused_before_allocation`;
//! - kill -9 then rerun resumes and loses nothing: sweep_cli.rs::killed_sweep_resumes_without_rerunning_finished_cells_and_gives_the_same_csv,
//!   reproduce_cli.rs::reproduce_quick_trains_resumes_and_reports_consistent_numbers,
//!   eval_llava_cli.rs::eval_killed_and_resumed_equals_uninterrupted_then_scores;
//! - a corrupt cell JSON in a sweep results folder: here, `a_corrupt_cell_json_in_a_sweep_results_folder_is_reported`;
//! - concurrent runs on one `--out`: sweep_cli.rs::second_run_with_other_settings_on_a_busy_results_folder_exits_2_naming_it,
//!   sweep_cli.rs::second_run_with_the_same_settings_waits_and_trains_no_cell_twice;
//! - values not checked, unbounded work, unit traps, OS errors, shard paths, long prompts, the KV
//!   cache: the tests below.
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
fn unbounded_requests_are_refused_at_once() {
    // 10⁸ budgets would run for days.
    let o = run_within(&["frontier", "--budget-range", "1e9,1e13,100000000"], Duration::from_secs(20));
    exits_2(&o, &["--budget-range", "more than the 1000"]);
    // A fit of 20 001 cells would run for minutes (≈ 2 ms per cell per grid pass).
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("big.csv");
    let mut text = String::from("llm_params,visual_tokens,score\n");
    for i in 0..20_001 {
        text += &format!("{},{},0.5\n", 0.5 + (i / 576) as f64, 1 + i % 576); // distinct (N, V)
    }
    std::fs::write(&csv, text).unwrap();
    let p = csv.display().to_string();
    let o = run_within(&["fit", "--data", &p, "--bootstrap", "0"], Duration::from_secs(20));
    exits_2(&o, &[&p, "20001 cells", "20000"]);
}

#[test]
fn law_parameters_outside_the_fit_constraints_are_refused_by_name() {
    let o = run(&["frontier", "--A=-1", "--alpha", "0.07", "--beta", "0.01", "--D", "0", "--budget", "1e12"]);
    exits_2(&o, &["A = -1", "> 0"]);
    let o = run(&["frontier", "--A", "0.5", "--alpha=-0.1", "--beta", "0.01", "--D", "0", "--budget", "1e12"]);
    exits_2(&o, &["alpha = -0.1"]);
    // A saved fit whose α is negative.
    let dir = tempfile::tempdir().unwrap();
    let o = run(&["fit", "--json", "--bootstrap", "0"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut fit: Value = serde_json::from_slice(&o.stdout).unwrap();
    fit["refined"]["alpha"] = Value::from(-0.5);
    let path = dir.path().join("fit.json");
    std::fs::write(&path, serde_json::to_string(&fit).unwrap()).unwrap();
    let p = path.display().to_string();
    let o = run(&["frontier", "--fit", &p, "--budget", "1e12"]);
    exits_2(&o, &[&p, "alpha = -0.5"]);
    // A missing fit file is bad input (2), named once.
    let missing = dir.path().join("missing.json").display().to_string();
    let o = run(&["frontier", "--fit", &missing, "--budget", "1e12"]);
    let e = exits_2(&o, &[&missing]);
    assert_eq!(e.matches("No such file").count(), 1, "{e}");
}

#[test]
fn flops_overflow_is_an_error_and_unit_traps_warn() {
    for extra in [&[][..], &["--exact"][..]] {
        let mut args = vec!["flops", "--llm-params", "7e9", "--visual-tokens", "1e300"];
        args.extend_from_slice(extra);
        let o = run(&args);
        let e = exits_2(&o, &["overflow"]);
        assert!(!String::from_utf8_lossy(&o.stdout).contains("NaN"), "{e}");
    }
    // flops takes a raw count: 7 is not 7 billion.
    let o = run(&["flops", "--llm-params", "7", "--visual-tokens", "16"]);
    assert!(o.status.success());
    assert!(stderr(&o).contains("warning") && stderr(&o).contains("7e9"), "{}", stderr(&o));
    let o = run(&["flops", "--llm-params", "7e9", "--visual-tokens", "16"]);
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    // frontier takes billions: 7e9 is not 7 billion.
    let o = run(&["frontier", "--llm-params", "7e9", "--budget", "1e12"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("warning") && stderr(&o).contains("billions"), "{}", stderr(&o));
    let o = run(&["frontier", "--llm-params", "7", "--budget", "1e12"]);
    assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
}

#[test]
fn os_errors_are_printed_once() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.csv").display().to_string();
    let o = run(&["fit", "--data", &missing]);
    let e = exits_2(&o, &[&missing]);
    assert_eq!(e.matches("No such file").count(), 1, "{e}");
}

#[test]
fn config_values_that_break_inference_are_refused_by_field() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for (name, field, value) in
        [("eps", "rms_norm_eps", Value::from(-1.0)), ("layers", "num_hidden_layers", Value::from(0))]
    {
        let m = damaged(root, name, |c| {
            c.insert(field.into(), value);
        });
        let o = generate(&m, &["--prompt", "What is shown?"]);
        exits_2(&o, &[&format!("`{field}`"), "config.json"]);
    }
    let m = damaged(root, "theta", |c| {
        c.insert("rope_parameters".into(), serde_json::json!({"rope_theta": 0.0, "rope_type": "default"}));
    });
    exits_2(&generate(&m, &["--prompt", "What is shown?"]), &["`rope_theta`", "config.json"]);
    // Without mm_projector_type (LLaVA's default `linear`, one layer) the weights' second projector
    // layer would be ignored.
    let m = damaged(root, "projector", |c| {
        c.remove("mm_projector_type");
    });
    exits_2(&generate(&m, &["--prompt", "What is shown?"]), &["mm_projector_type", "model.mm_projector.3.weight"]);
    // A weight whose shape disagrees with config.json: exit 2, naming the checkpoint and the tensor.
    let m = damaged(root, "shape", |c| {
        c.insert("intermediate_size".into(), Value::from(96));
    });
    exits_2(&generate(&m, &["--prompt", "What is shown?"]), &[&m, "mlp"]);
}

#[test]
fn shard_paths_must_stay_inside_the_checkpoint_folder() {
    let dir = tempfile::tempdir().unwrap();
    let m = damaged(dir.path(), "m", |_| {});
    std::fs::remove_file(Path::new(&m).join("model.safetensors")).unwrap();
    let index = serde_json::json!({"weight_map": {"model.embed_tokens.weight": "../../../../etc/passwd"}});
    std::fs::write(Path::new(&m).join("model.safetensors.index.json"), index.to_string()).unwrap();
    exits_2(
        &generate(&m, &["--prompt", "What is shown?"]),
        &["model.safetensors.index.json", "leaves the checkpoint folder"],
    );
}

#[test]
fn prompt_file_gives_the_same_answer_as_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let exp: Value = serde_json::from_str(&std::fs::read_to_string(fixture().join("expected.json")).unwrap()).unwrap();
    let q = exp["question"].as_str().unwrap();
    let f = dir.path().join("q.txt");
    std::fs::write(&f, format!("{q}\n")).unwrap();
    let m = fixture().display().to_string();
    let a = generate(&m, &["--prompt", q]);
    let b = generate(&m, &["--prompt-file", &f.display().to_string()]);
    assert!(a.status.success() && b.status.success(), "{}\n{}", stderr(&a), stderr(&b));
    let first = |o: &Output| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or_default().to_string();
    assert_eq!(first(&a), first(&b));
    let missing = dir.path().join("missing.txt").display().to_string();
    exits_2(&generate(&m, &["--prompt-file", &missing]), &["--prompt-file", &missing]);
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

/// The "peak resident memory X MiB" line `generate` prints on stderr, in MiB.
fn peak_mib(o: &Output) -> f64 {
    let err = stderr(o);
    let line = err.lines().find(|l| l.starts_with("peak resident memory")).unwrap_or_else(|| panic!("{err}"));
    line.split_whitespace().nth(3).and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{line}"))
}

#[test]
fn the_kv_cache_grows_with_the_prompt_not_with_max_position_embeddings() {
    let tmp = tempfile::tempdir().unwrap();
    let small = damaged(tmp.path(), "p256", |c| {
        c.insert("max_position_embeddings".into(), 256.into());
    });
    let huge = damaged(tmp.path(), "p1e12", |c| {
        c.insert("max_position_embeddings".into(), 1_000_000_000_000u64.into());
    });
    let prompt = ["--prompt", "What is in the image?"];
    let (a, b) = (generate(&small, &prompt), generate(&huge, &prompt));
    assert!(a.status.success() && b.status.success(), "{}\n{}", stderr(&a), stderr(&b));
    // The same answer, and peak memory within 10 % (a cache sized by the config would need terabytes).
    assert_eq!(String::from_utf8_lossy(&a.stdout).lines().next(), String::from_utf8_lossy(&b.stdout).lines().next());
    let (pa, pb) = (peak_mib(&a), peak_mib(&b));
    assert!((pb - pa).abs() <= 0.1 * pa, "peak {pb} MiB at 10^12 positions vs {pa} MiB at 256");
}

/// A copy of the fixture checkpoint in `root/name` whose `model.safetensors` is `damage(bytes)`.
fn damaged_weights(root: &Path, name: &str, damage: impl FnOnce(Vec<u8>) -> Vec<u8>) -> String {
    let m = damaged(root, name, |_| {});
    let w = Path::new(&m).join("model.safetensors");
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, damage(bytes)).unwrap();
    m
}

#[test]
fn damaged_safetensors_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    type Damage = fn(Vec<u8>) -> Vec<u8>;
    let cases: [(&str, Damage); 4] = [
        // Cut in the middle of the tensor data.
        ("truncated", |b| b[..b.len() / 2].to_vec()),
        // Cut inside the 8-byte length.
        ("cut_in_length", |b| b[..5].to_vec()),
        // A header length far beyond the file.
        ("header_beyond_file", |mut b| {
            b[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
            b
        }),
        // The JSON header's first byte is not `{`.
        ("bad_json_header", |mut b| {
            assert_eq!(b[8], b'{');
            b[8] = b'#';
            b
        }),
    ];
    for (name, damage) in cases {
        let m = damaged_weights(dir.path(), name, damage);
        let weights = Path::new(&m).join("model.safetensors").display().to_string();
        let e = exits_2(&run(&["inspect", "--model", &m]), &[weights.as_str()]);
        assert!(!e.contains("panicked"), "{name}: {e}");
        let e = exits_2(&generate(&m, &["--prompt", "What is shown?"]), &[weights.as_str()]);
        assert!(!e.contains("panicked"), "{name}: {e}");
    }
}

/// A PNG whose header declares `w`×`h` pixels, with a tiny (invalid) data stream: a decompression
/// bomb as far as the header goes (the same construction as the serve crate's bad-request tests).
fn png_header(w: u32, h: u32) -> Vec<u8> {
    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xFFFF_FFFFu32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        let mut crc_in = kind.to_vec();
        crc_in.extend_from_slice(data);
        out.extend_from_slice(&crc_in);
        out.extend_from_slice(&crc32(&crc_in).to_be_bytes());
    }
    assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = vec![];
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]); // 8-bit RGB
    chunk(&mut out, b"IHDR", &ihdr);
    chunk(&mut out, b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    chunk(&mut out, b"IEND", &[]);
    out
}

#[test]
fn image_bombs_are_refused_before_allocation() {
    let dir = tempfile::tempdir().unwrap();
    let m = fixture().display().to_string();
    for (w, h) in [(100_000, 100_000), (65_535, 65_535)] {
        let p = dir.path().join(format!("bomb_{w}x{h}.png"));
        std::fs::write(&p, png_header(w, h)).unwrap();
        let img = p.display().to_string();
        // 100000² RGB pixels would be 30 GB: an attempt to allocate them would abort or take far
        // longer than the limit; a refusal from the header alone is immediate.
        let o = run_within(
            &["generate", "--model", &m, "--image", &img, "--prompt", "What is shown?", "--max-new-tokens", "2"],
            Duration::from_secs(20),
        );
        let e = exits_2(&o, &[format!("bomb_{w}x{h}.png").as_str()]);
        assert!(!e.contains("panicked") && !e.contains("memory allocation"), "{e}");
    }
}

#[test]
fn a_corrupt_cell_json_in_a_sweep_results_folder_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("r");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sweeps/quick.toml").display().to_string();
    let res = results.display().to_string();
    let sweep = |extra: &[&str]| {
        let mut args =
            vec!["sweep", "--config", config.as_str(), "--runner", "synthetic", "--results-dir", res.as_str()];
        args.extend_from_slice(extra);
        run_within(&args, Duration::from_secs(30))
    };
    let o = sweep(&[]);
    assert!(o.status.success(), "{}", stderr(&o));
    // Damage one finished cell's result (a torn write: a JSON object cut short).
    let cell = std::fs::read_dir(results.join("cells"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .min()
        .expect("a cell result");
    let bytes = std::fs::read(&cell).unwrap();
    std::fs::write(&cell, &bytes[..bytes.len() / 2]).unwrap();
    let name = cell.file_name().unwrap().to_string_lossy().into_owned();
    let o = sweep(&[]);
    let e = stderr(&o);
    assert!(!o.status.success(), "a corrupt cell result went unnoticed: {e}");
    assert!(e.contains(&name), "stderr lacks the cell file {name}: {e}");
    assert!(!e.contains("panicked"), "{e}");
}

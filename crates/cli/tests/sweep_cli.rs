//! `vlmscale sweep` end to end with the synthetic (test/demo) runner: interrupting a sweep and
//! rerunning it skips the finished cells and gives the same CSV; a failing cell does not stop the others.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vlmscale"))
}

fn quick() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sweeps/quick.toml")
}

fn sweep(results: &Path, extra: &[&str]) -> std::process::Output {
    let mut c = bin();
    c.args(["sweep", "--config"])
        .arg(quick())
        .args(["--runner", "synthetic", "--results-dir"])
        .arg(results)
        .args(extra);
    c.output().unwrap()
}

fn finished(results: &Path) -> usize {
    std::fs::read_dir(results.join("cells"))
        .map(|d| {
            d.filter(|e| {
                e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".quecc.json")
                    || e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".quecc-noquery.json")
            })
            .count()
        })
        .unwrap_or(0)
}

#[test]
fn killed_sweep_resumes_without_rerunning_finished_cells_and_gives_the_same_csv() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    // 16 cells of 150 ms each, one at a time: kill once at least two have finished.
    let mut child = bin()
        .args(["sweep", "--config"])
        .arg(quick())
        .args(["--runner", "synthetic", "--synthetic-delay-ms", "150", "--jobs", "1", "--results-dir"])
        .arg(&a)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..400 {
        if finished(&a) >= 2 {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let done = finished(&a);
    assert!((2..16).contains(&done), "{done} cells finished before the kill");
    assert!(!a.join("aggregate.csv").exists());

    let out = sweep(&a, &["--jobs", "2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("{done} already finished (skipped), {} ran now, 0 failed", 16 - done)), "{text}");
    assert!(text.contains("SYNTHETIC"), "{text}");

    let out = sweep(&b, &[]);
    assert!(out.status.success());
    assert_eq!(std::fs::read(a.join("aggregate.csv")).unwrap(), std::fs::read(b.join("aggregate.csv")).unwrap());

    // A third run has nothing to do.
    let out = sweep(&a, &[]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("16 already finished (skipped), 0 ran now"));
}

#[test]
fn failed_cell_is_reported_and_the_others_finish() {
    let dir = tempfile::tempdir().unwrap();
    let bad = "fine_detail.xs.v4.quecc";
    let out = sweep(dir.path(), &["--jobs", "2", "--synthetic-fail", bad]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("15 ran now, 1 failed") && text.contains(&format!("FAILED {bad}")), "{text}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("1 of 16 cells failed"));
    assert!(dir.path().join(format!("cells/{bad}.failed.json")).exists());
    let csv = std::fs::read_to_string(dir.path().join("aggregate.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 15);

    // run-cell for an out-of-range index is a usage error (exit 2) naming the grid size.
    let out = bin()
        .args(["sweep", "run-cell", "--config"])
        .arg(quick())
        .args(["--index", "16", "--runner", "synthetic"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("16 cells"));
}

/// Starts a synthetic sweep of `config` on `results` (each cell `delay_ms` long, one at a time) and
/// waits until it holds the results folder's lock and has recorded its settings in it.
fn start_locked(config: &Path, results: &Path, delay_ms: u64) -> std::process::Child {
    let mut child = bin()
        .args(["sweep", "--config"])
        .arg(config)
        .args(["--runner", "synthetic", "--jobs", "1", "--synthetic-delay-ms", &delay_ms.to_string()])
        .arg("--results-dir")
        .arg(results)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lock = results.join("sweep.lock");
    let t0 = std::time::Instant::now();
    while !std::fs::metadata(&lock).is_ok_and(|m| m.len() > 0) {
        if t0.elapsed() > Duration::from_secs(10) {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("the first sweep did not record itself in {}", lock.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    child
}

/// quick.toml with 25 steps per cell instead of 15 (other settings, same cells).
fn quick_25_steps(dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(quick()).unwrap();
    assert!(text.contains("steps = 15"));
    let p = dir.join("q25.toml");
    std::fs::write(&p, text.replace("steps = 15", "steps = 25")).unwrap();
    p
}

#[test]
fn second_run_with_other_settings_on_a_busy_results_folder_exits_2_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("Y");
    let q25 = quick_25_steps(dir.path());
    // 16 cells × 150 ms: the first run holds the folder for ≥ 2.4 s.
    let first = start_locked(&quick(), &results, 150);
    let second = bin()
        .args(["sweep", "--config"])
        .arg(&q25)
        .args(["--runner", "synthetic", "--results-dir"])
        .arg(&results)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{err}");
    assert!(err.contains(&results.display().to_string()) && err.contains("other settings"), "{err}");
    // reproduce takes the same lock.
    let third = bin()
        .args(["reproduce", "--runner", "synthetic", "--bootstrap", "0", "--config"])
        .arg(&q25)
        .arg("--out")
        .arg(&results)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&third.stderr);
    assert_eq!(third.status.code(), Some(2), "{err}");
    assert!(err.contains(&results.display().to_string()) && err.contains("other settings"), "{err}");
    assert!(!results.join("report").exists(), "the refused reproduce wrote a report");

    let out = first.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("16 cells — 0 already finished (skipped), 16 ran now, 0 failed"), "{text}");
}

#[test]
fn second_run_with_the_same_settings_waits_and_trains_no_cell_twice() {
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("Y");
    let first = start_locked(&quick(), &results, 100);
    // Without the lock the second run would start the cells the first has not finished yet.
    let second = sweep(&results, &["--jobs", "2"]);
    let first = first.wait_with_output().unwrap();
    let (t1, t2) = (String::from_utf8_lossy(&first.stdout), String::from_utf8_lossy(&second.stdout));
    assert!(first.status.success() && second.status.success(), "{t1}\n{t2}");
    assert!(t1.contains("16 ran now, 0 failed"), "{t1}");
    assert!(t2.contains("16 already finished (skipped), 0 ran now, 0 failed"), "{t2}");
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("waiting") && err.contains(&results.display().to_string()), "{err}");
}

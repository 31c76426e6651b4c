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

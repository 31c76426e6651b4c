//! `--jobs N` runs N cells at once even when each cell's compute pool has one thread: the kernels put
//! their work on the current rayon pool (`kernels::threads::in_pool` is a `rayon::scope`), so cells
//! sharing the process's one-thread pool would take turns instead of running side by side.
//! Alone in its test binary because it sets the global pool to one thread.
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use sweep::grid::{Cell, SweepConfig};
use sweep::runner::{CellResult, CellRunner};
use sweep::synthetic::SyntheticRunner;

/// Every cell waits, inside a rayon scope (where the kernels compute), until a second cell is inside
/// one too, or 10 s pass; it records whether it met the other.
struct Rendezvous {
    inside: AtomicUsize,
    met: Mutex<Vec<bool>>,
}

impl CellRunner for Rendezvous {
    fn name(&self) -> &str {
        "synthetic"
    }
    fn run(&self, cell: &Cell, out_dir: &Path) -> sweep::error::Result<CellResult> {
        let met = rayon::scope(|_| {
            self.inside.fetch_add(1, Ordering::SeqCst);
            let t0 = Instant::now();
            while self.inside.load(Ordering::SeqCst) < 2 && t0.elapsed() < Duration::from_secs(10) {
                std::thread::sleep(Duration::from_millis(5));
            }
            self.inside.load(Ordering::SeqCst) >= 2
        });
        self.met.lock().unwrap().push(met);
        SyntheticRunner::default().run(cell, out_dir)
    }
}

#[test]
fn two_jobs_compute_at_once_with_one_thread_each() {
    rayon::ThreadPoolBuilder::new().num_threads(1).build_global().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sweep.toml");
    let text = "name = \"jobs\"\nresults_dir = \"res\"\nvisual_tokens = [1, 4]\ncompressors = [\"quecc\"]\n\
                tasks = [\"sort_of_clevr\"]\n[[llm]]\nname = \"a\"\nparams = 0.002\n[[llm]]\nname = \"b\"\nparams = 0.008\n";
    std::fs::write(&p, text).unwrap();
    let mut cfg = SweepConfig::from_path(&p).unwrap();
    cfg.results_dir = dir.path().join("res");
    let r = Rendezvous { inside: AtomicUsize::new(0), met: Mutex::new(vec![]) };
    let s = sweep::sweep::run_sweep(&cfg, &r, 2, false).unwrap();
    assert_eq!(s.ran, 4);
    // Taking turns, the first cell would wait its 10 s alone in the pool and record `false`.
    assert_eq!(*r.met.lock().unwrap(), [true; 4], "the cells did not compute at the same time");
}

//! Scale-out on Slurm: an `sbatch` job array with one task per cell (each runs
//! `vlmscale sweep run-cell --config … --index $SLURM_ARRAY_TASK_ID` into the shared results folder),
//! a dependent aggregation + report job, and `submit.sh`, which submits the array and then the
//! aggregation job with `--dependency=afterok:<array job id>`.
use crate::error::{io, Result};
use crate::grid::SweepConfig;
use std::path::{Path, PathBuf};

/// What to put in the scripts besides the config.
#[derive(Debug, Clone)]
pub struct SlurmOptions {
    /// The `vlmscale` binary every task runs (absolute path; must exist on the compute nodes).
    pub binary: PathBuf,
    /// Extra arguments appended to every `vlmscale sweep …` call (e.g. `--runner synthetic`,
    /// `--results-dir DIR`).
    pub extra_args: Vec<String>,
    /// Results folder the jobs write to (must be shared between nodes).
    pub results_dir: PathBuf,
    /// Most array tasks running at once (`%K` in `--array`), `None` for Slurm's default.
    pub max_parallel: Option<usize>,
    /// CPUs per array task.
    pub cpus_per_task: usize,
}

/// Single-quotes a string for bash.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn path_q(p: &Path) -> String {
    shell_quote(&p.display().to_string())
}

/// A grid of independent cells for Slurm: what each array task and the final job run.
#[derive(Debug, Clone)]
pub struct SlurmJobs {
    /// Name in the job names and comments.
    pub name: String,
    /// Number of cells (array tasks `0..cells`).
    pub cells: usize,
    /// Arguments of the binary for one cell, already shell-quoted, without the trailing
    /// `--index "$SLURM_ARRAY_TASK_ID"` which is appended.
    pub cell_args: String,
    /// How a user lists the cells (for the array script's comment).
    pub list_hint: String,
    /// Argument strings (shell-quoted) of the binary calls of the dependent job, run in order.
    pub final_args: Vec<String>,
    /// What the dependent job does (for its comment), e.g. `aggregate the cells into the scores CSV`.
    pub final_what: String,
}

/// Writes `array.sbatch`, `aggregate.sbatch` and `submit.sh` (executable) into `dir`, plus `dir/logs/`.
/// Returns the three paths.
///
/// Errors: [`crate::Error::Io`] naming the file or folder that could not be written.
pub fn emit(cfg: &SweepConfig, opts: &SlurmOptions, dir: &Path) -> Result<Vec<PathBuf>> {
    let extra: String = opts.extra_args.iter().map(|a| format!(" {}", shell_quote(a))).collect();
    let common = format!("sweep {{SUB}} --config {}{extra}", path_q(&cfg.path));
    let report_dir = opts.results_dir.join("report");
    let jobs = SlurmJobs {
        name: format!("sweep `{}`", cfg.name),
        cells: cfg.cells().len(),
        cell_args: common.replace("{SUB}", "run-cell"),
        list_hint: "`vlmscale sweep list --config …`".into(),
        final_args: vec![
            common.replace("{SUB}", "aggregate"),
            format!("{} --out {}", common.replace("{SUB}", "report"), path_q(&report_dir)),
        ],
        final_what: "aggregate the cells into the scores CSV, then fit and report".into(),
    };
    emit_jobs(&jobs, &cfg.name, opts, dir)
}

/// Writes the scripts of [`emit`] for any grid of cells: `array.sbatch` (one task per cell, each
/// `<binary> <cell_args> --index $SLURM_ARRAY_TASK_ID`), `aggregate.sbatch` (the `final_args`
/// calls) and `submit.sh`. `job_name` goes into `--job-name=vlmscale-<job_name>-…`.
///
/// Errors: [`crate::Error::Io`] naming the file or folder that could not be written.
pub fn emit_jobs(jobs: &SlurmJobs, job_name: &str, opts: &SlurmOptions, dir: &Path) -> Result<Vec<PathBuf>> {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(io(&logs))?;
    let logs = std::path::absolute(&logs).map_err(io(&logs))?;
    let n = jobs.cells;
    let bin = path_q(&opts.binary);
    let throttle = opts.max_parallel.map(|k| format!("%{k}")).unwrap_or_default();
    let array = format!(
        "#!/bin/bash\n\
         # vlmscale {name}: one array task per grid cell ({n} cells; cell ids and indices are\n\
         # listed by {hint}). Each task skips a cell that already finished.\n\
         #SBATCH --job-name=vlmscale-{job_name}-cells\n\
         #SBATCH --array=0-{last}{throttle}\n\
         #SBATCH --cpus-per-task={cpus}\n\
         #SBATCH --output={logs}/cell-%A_%a.out\n\
         set -euo pipefail\n\
         # One cell per task, with as many compute threads as CPUs it was given.\n\
         export RAYON_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-{cpus}}}\"\n\
         exec {bin} {cmd} --index \"$SLURM_ARRAY_TASK_ID\"\n",
        name = jobs.name,
        hint = jobs.list_hint,
        last = n.saturating_sub(1),
        cpus = opts.cpus_per_task,
        logs = logs.display(),
        cmd = jobs.cell_args,
    );
    let calls: String = jobs.final_args.iter().map(|a| format!("{bin} {a}\n")).collect();
    let aggregate = format!(
        "#!/bin/bash\n\
         # vlmscale {name}: {what}.\n\
         #SBATCH --job-name=vlmscale-{job_name}-aggregate\n\
         #SBATCH --cpus-per-task={cpus}\n\
         #SBATCH --output={logs}/aggregate-%j.out\n\
         set -euo pipefail\n\
         {calls}",
        name = jobs.name,
        what = jobs.final_what,
        cpus = opts.cpus_per_task,
        logs = logs.display(),
    );
    let submit = "#!/bin/bash\n\
         # Submits the cell array, then the aggregation job to run after every array task succeeded.\n\
         # Prints the two job ids (array, aggregate) on one line.\n\
         set -euo pipefail\n\
         here=$(cd \"$(dirname \"$0\")\" && pwd)\n\
         array=$(sbatch --parsable \"$here/array.sbatch\")\n\
         array=${array%%;*}\n\
         agg=$(sbatch --parsable --dependency=afterok:\"$array\" \"$here/aggregate.sbatch\")\n\
         agg=${agg%%;*}\n\
         echo \"$array $agg\"\n"
        .to_string();
    let mut out = Vec::new();
    for (name, text) in [("array.sbatch", array), ("aggregate.sbatch", aggregate), ("submit.sh", submit)] {
        let p = dir.join(name);
        scaling::output::write_atomic(&p, text.as_bytes())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).map_err(io(&p))?;
        }
        out.push(p);
    }
    Ok(out)
}

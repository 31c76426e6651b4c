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

/// Writes `array.sbatch`, `aggregate.sbatch` and `submit.sh` (executable) into `dir`, plus `dir/logs/`.
/// Returns the three paths.
///
/// Errors: [`crate::Error::Io`] naming the file or folder that could not be written.
pub fn emit(cfg: &SweepConfig, opts: &SlurmOptions, dir: &Path) -> Result<Vec<PathBuf>> {
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(io(&logs))?;
    let logs = std::path::absolute(&logs).map_err(io(&logs))?;
    let n = cfg.cells().len();
    let extra: String = opts.extra_args.iter().map(|a| format!(" {}", shell_quote(a))).collect();
    let common = format!("sweep {{SUB}} --config {}{extra}", path_q(&cfg.path));
    let bin = path_q(&opts.binary);
    let throttle = opts.max_parallel.map(|k| format!("%{k}")).unwrap_or_default();
    let array = format!(
        "#!/bin/bash\n\
         # vlmscale sweep `{name}`: one array task per grid cell ({n} cells; cell ids and indices are\n\
         # listed by `vlmscale sweep list --config …`). Each task skips a cell that already finished.\n\
         #SBATCH --job-name=vlmscale-{name}-cells\n\
         #SBATCH --array=0-{last}{throttle}\n\
         #SBATCH --cpus-per-task={cpus}\n\
         #SBATCH --output={logs}/cell-%A_%a.out\n\
         set -euo pipefail\n\
         # One cell per task, with as many compute threads as CPUs it was given.\n\
         export RAYON_NUM_THREADS=\"${{SLURM_CPUS_PER_TASK:-{cpus}}}\"\n\
         exec {bin} {cmd} --index \"$SLURM_ARRAY_TASK_ID\"\n",
        name = cfg.name,
        last = n.saturating_sub(1),
        cpus = opts.cpus_per_task,
        logs = logs.display(),
        cmd = common.replace("{SUB}", "run-cell"),
    );
    let report_dir = opts.results_dir.join("report");
    let aggregate = format!(
        "#!/bin/bash\n\
         # vlmscale sweep `{name}`: aggregate the cells into the scores CSV, then fit and report.\n\
         #SBATCH --job-name=vlmscale-{name}-aggregate\n\
         #SBATCH --cpus-per-task={cpus}\n\
         #SBATCH --output={logs}/aggregate-%j.out\n\
         set -euo pipefail\n\
         {bin} {agg}\n\
         {bin} {rep} --out {out}\n",
        name = cfg.name,
        cpus = opts.cpus_per_task,
        logs = logs.display(),
        agg = common.replace("{SUB}", "aggregate"),
        rep = common.replace("{SUB}", "report"),
        out = path_q(&report_dir),
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

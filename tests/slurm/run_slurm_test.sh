#!/bin/bash
# Real Slurm test of `vlmscale sweep --emit-slurm`: installs Debian's slurm-wlm + munge (as root),
# starts a one-node cluster (slurmctld + slurmd on this host, CPUs=2), submits the emitted job array
# for the quick grid (sweeps/quick.toml, 16 cells, with its training steps cut to 2 so the test takes
# seconds: real VLM training and evaluation, the vision tower pretrained once by whichever array task
# gets its lock first) plus the dependent aggregate+report job, waits (timeout), and checks that the
# aggregate CSV is byte-identical to a local `vlmscale sweep` run's (training is deterministic with
# one thread per cell). Stops every daemon it started on exit.
#
# Usage (from the repository root, as root):
#   bash tests/slurm/run_slurm_test.sh [PATH/TO/vlmscale]
# Without an argument it builds the binary with `cargo build -p vlmscale` (honouring CARGO_TARGET_DIR).
# Environment: SLURM_TEST_TIMEOUT (seconds to wait for the jobs, default 300).
set -euo pipefail
repo=$(cd "$(dirname "$0")/../.." && pwd)
timeout_s=${SLURM_TEST_TIMEOUT:-300}
t_start=$(date +%s)

if [ "$(id -u)" != 0 ]; then
  echo "run_slurm_test: must run as root (installs packages, starts munged/slurmd)" >&2
  exit 2
fi

if [ $# -ge 1 ]; then
  bin=$(readlink -f "$1")
else
  (cd "$repo" && cargo build -q -p vlmscale)
  bin=$(readlink -f "${CARGO_TARGET_DIR:-$repo/target}/debug/vlmscale")
fi
[ -x "$bin" ] || { echo "run_slurm_test: no vlmscale binary at $bin" >&2; exit 2; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  echo "== installing slurm-wlm and munge"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi

tmp=$(mktemp -d /tmp/vlmscale-slurm.XXXXXX)
chmod 755 "$tmp"
pids=()
cleanup() {
  local rc=$?
  if [ -n "${SLURM_CONF:-}" ] && command -v scancel >/dev/null; then scancel --user=root >/dev/null 2>&1 || true; fi
  for p in "${pids[@]}"; do
    kill "$p" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null || true
  done
  if [ $rc != 0 ]; then
    echo "== FAILED (rc $rc); logs:" >&2
    for f in "$tmp"/log/* "$tmp"/slurm/logs/*; do [ -f "$f" ] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done
  fi
  rm -rf "$tmp"
  exit $rc
}
trap cleanup EXIT

# A private copy: a shared target dir may be rebuilt by someone else while the jobs run.
cp "$bin" "$tmp/vlmscale"
bin="$tmp/vlmscale"

host=$(hostname)
mkdir -p "$tmp"/{state,spool,log,run}

# munged as the munge user, with its own socket/pid under $tmp.
if [ ! -s /etc/munge/munge.key ]; then
  mungekey --create --keyfile=/etc/munge/munge.key
  chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
fi
mkdir -p "$tmp/munge"
chown munge:munge "$tmp/munge"
sock="$tmp/munge/munge.socket.2"
echo "== starting munged"
runuser -u munge -- /usr/sbin/munged --socket="$sock" --pid-file="$tmp/munge/munged.pid" \
  --log-file="$tmp/munge/munged.log" --seed-file="$tmp/munge/munged.seed"
for _ in $(seq 50); do [ -s "$tmp/munge/munged.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$tmp/munge/munged.pid")")
munge --socket="$sock" -n | unmunge --socket="$sock" >/dev/null

cat > "$tmp/slurm.conf" <<CONF
ClusterName=vlmscale-test
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket=$sock
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
StateSaveLocation=$tmp/state
SlurmdSpoolDir=$tmp/spool
SlurmctldPidFile=$tmp/run/slurmctld.pid
SlurmdPidFile=$tmp/run/slurmd.pid
SlurmctldLogFile=$tmp/log/slurmctld.log
SlurmdLogFile=$tmp/log/slurmd.log
SlurmctldPort=16817
SlurmdPort=16818
NodeName=$host CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
export SLURM_CONF="$tmp/slurm.conf"

echo "== starting slurmctld, slurmd"
slurmctld -f "$SLURM_CONF"
for _ in $(seq 100); do [ -s "$tmp/run/slurmctld.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$tmp/run/slurmctld.pid")")
slurmd -f "$SLURM_CONF"
for _ in $(seq 100); do [ -s "$tmp/run/slurmd.pid" ] && break; sleep 0.1; done
pids+=("$(cat "$tmp/run/slurmd.pid")")
for _ in $(seq 100); do
  sinfo -h -o %t 2>/dev/null | grep -Eq '^idle' && break
  sleep 0.2
done
sinfo

# The quick grid with 2 training steps per cell and per tower, 8 held-out images (a copy under $tmp).
sed -E 's/^steps = [0-9]+$/steps = 2/; s/^eval_images = [0-9]+$/eval_images = 8/' "$repo/sweeps/quick.toml" > "$tmp/quick.toml"
grep -q '^steps = 2$' "$tmp/quick.toml" || { echo "run_slurm_test: could not shorten sweeps/quick.toml" >&2; exit 1; }
echo "== local reference run (2 cells at a time, one thread each)"
"$bin" sweep --config "$tmp/quick.toml" --jobs 2 --results-dir "$tmp/local" >/dev/null
echo "== emitting and submitting the Slurm job array"
"$bin" sweep --config "$tmp/quick.toml" --results-dir "$tmp/cluster" --emit-slurm "$tmp/slurm"
read -r array agg < <(bash "$tmp/slurm/submit.sh")
echo "array job $array, aggregate job $agg"
deadline=$(( $(date +%s) + timeout_s ))
while squeue -h -j "$array,$agg" 2>/dev/null | grep -q .; do
  if [ "$(date +%s)" -gt "$deadline" ]; then
    echo "run_slurm_test: jobs still queued after ${timeout_s}s" >&2; squeue >&2; exit 1
  fi
  if squeue -h -j "$agg" -o %r 2>/dev/null | grep -q DependencyNeverSatisfied; then
    echo "run_slurm_test: an array task failed (aggregate job's dependency can never be satisfied)" >&2; exit 1
  fi
  sleep 1
done
state=$(scontrol show job "$agg" 2>/dev/null | grep -o 'JobState=[A-Z]*' || true)
echo "aggregate job: ${state:-gone from the controller}"

cmp "$tmp/local/aggregate.csv" "$tmp/cluster/aggregate.csv"
[ "$(wc -l < "$tmp/cluster/aggregate.csv")" = 17 ] || { echo "expected 16 rows" >&2; exit 1; }
[ -s "$tmp/cluster/report/report.md" ] || { echo "the aggregate job wrote no report" >&2; exit 1; }
grep -q '"runner": "train"' "$tmp/cluster/cells/sort_of_clevr.xs.v1.quecc.json" || { echo "cells were not trained" >&2; exit 1; }
# The tower lock is an OS file lock (flock) on tower.lock: the file stays, the lock must be released.
[ -s "$tmp/cluster/tower/sweep_tower.json" ] || { echo "tower missing" >&2; exit 1; }
flock -n "$tmp/cluster/tower.lock" true || { echo "tower lock still held after the jobs ended" >&2; exit 1; }
n_logs=$(ls "$tmp/slurm/logs" | grep -c '^cell-' || true)
[ "$n_logs" = 16 ] || { echo "expected 16 array-task logs, found $n_logs" >&2; exit 1; }
echo "== PASS: Slurm aggregate CSV identical to the local run's (16 trained cells), report written; $(( $(date +%s) - t_start )) s"

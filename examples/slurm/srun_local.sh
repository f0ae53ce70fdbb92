#!/usr/bin/env bash
# Imitate `srun --ntasks-per-node=N` on one machine without SLURM: start N copies of a command with
# the variables srun sets, so Lightning's SLURMEnvironment is the one detected (no self-spawning).
# Used to check the SLURM path of `culturalign fit` on CPU (docs/scaling.md); not for production.
#   OMP_NUM_THREADS=1 examples/slurm/srun_local.sh 2 culturalign fit --launch.devices 2 --launch.accelerator cpu ...
# -h / --help prints the comment block above and exits (scripts are smoke-tested with it).
case "${1:-}" in -h|--help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0;; esac
set -euo pipefail
N=$1; shift
export SLURM_NTASKS=$N SLURM_NTASKS_PER_NODE=$N SLURM_NNODES=1 SLURM_NODEID=0 SLURM_JOB_ID=424242 \
       SLURM_JOB_NAME=culturalign SLURM_NODELIST=127.0.0.1 MASTER_PORT=${MASTER_PORT:-29517}
pids=()
for ((i = 0; i < N; i++)); do
  SLURM_PROCID=$i SLURM_LOCALID=$i "$@" &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
exit $rc

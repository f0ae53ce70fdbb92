#!/usr/bin/env bash
# DE vs CMA-ES vs PSO, each in the 64-dim random subspace and in the full T x d space, on the
# embedded model (SmolLM2-135M-Instruct), target Saudi Arabia: same budget, same seed, same init.
# Writes checkpoints/compare-<optimizer>-<space>/, docs/img/optimizers_convergence.png and a
# Markdown table (stdout and checkpoints/compare-summary.md). Used for docs/optimizers.md.
#
#   bash experiments/compare_optimizers.sh                   # POPSIZE=8 BUDGET=64 SEED=0
#   POPSIZE=16 BUDGET=320 bash experiments/compare_optimizers.sh
#
# Each fit takes the shared CPU lock (one heavy job at a time on the dev machine); set LOCK= to skip it.
# -h / --help prints the comment block above and exits (scripts are smoke-tested with it).
case "${1:-}" in -h|--help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0;; esac
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
POPSIZE=${POPSIZE:-8}
BUDGET=${BUDGET:-64}
SEED=${SEED:-0}
ROOT=${ROOT:-checkpoints}
LOCK=${LOCK-/tmp/culturalign-cpu.lock}
OPTIMIZERS=${OPTIMIZERS:-"de cmaes pso"}
SPACES=${SPACES:-"subspace full"}
PLOT=${PLOT:-docs/img/optimizers_convergence.png}
EXTRA=${EXTRA:-}  # more fit options, e.g. EXTRA="--model /tmp/tinym" for a dry run on a tiny model

for opt in $OPTIMIZERS; do
  for space in $SPACES; do
    # The shipped per-optimizer CPU config, shrunk to the comparison's budget; no held-out wording
    # (it is reported after the search and does not change it).
    cmd=("$BIN/culturalign" fit --config "configs/${opt}_cpu.yaml"
         --optimizer.popsize "$POPSIZE" --search.space "$space" --search.budget "$BUDGET" --search.max_time null
         --survey.heldout "[]" --run.seed "$SEED" --run.root "$ROOT" --run.name "compare-$opt-$space" --run.resume false $EXTRA)
    echo "== ${cmd[*]}" >&2
    if [ -n "$LOCK" ]; then flock "$LOCK" "${cmd[@]}"; else "${cmd[@]}"; fi
  done
done

OPTIMIZERS="$OPTIMIZERS" SPACES="$SPACES" ROOT="$ROOT" PLOT="$PLOT" "$BIN/python" - <<'PY'
"""One convergence plot (best loss against evaluations) and one table from the runs' metrics logs (logs/metrics.csv)."""
import json
import os
from pathlib import Path

from culturalign.blackbox.loop import read_history
from culturalign.plots import convergence

root = Path(os.environ["ROOT"])
curves, rows, baseline = {}, [], None
for opt in os.environ["OPTIMIZERS"].split():
    for space in os.environ["SPACES"].split():
        run_dir = root / f"compare-{opt}-{space}"
        meta = json.loads((run_dir / "meta.json").read_text())
        hist = read_history(run_dir)
        init, baseline = meta["init_prompt"]["loss"], meta["baseline"]["loss"]
        label = f"{meta['optimizer']['name']} {space} ({meta['search']['dim']} dims)"
        # Evaluation 0 is the init prompt, where every run starts.
        curves[label] = ([0] + [h["evaluations"] for h in hist], [init] + [h["best_loss"] for h in hist])
        half = next((h["evaluations"] for h in hist if h["best_loss"] <= init / 2), None)
        rows.append(f"| {meta['optimizer']['name']} | {space} | {meta['search']['dim']} | {init:.2f} | "
                    + " | ".join(f"{h['best_loss']:.2f}" for h in hist[1::2]) + f" | **{meta['best_loss']:.2f}** | "
                    + f"{meta['best_loss'] / baseline:.2f} | {meta['seconds']:.0f} |")
pop = meta["optimizer"]["config"]["popsize"]
evals = " | ".join(f"best @{int(h['evaluations'])}" for h in hist[1::2])
table = "\n".join([
    f"no-prompt loss (baseline): {baseline:.2f}; population {pop}, seed {meta['seed']}, "
    f"T = {meta['num_virtual_tokens']}, model {meta['backbone']['model_id']} ({meta['backbone']['dtype']})",
    "",
    f"| optimizer | space | dims | init loss | {evals} | final best | best / no prompt | search seconds |",
    "|---|---|---|---|" + "---|" * len(hist[1::2]) + "---|---|---|",
    *rows,
])
Path(os.environ["PLOT"]).parent.mkdir(parents=True, exist_ok=True)
convergence(curves, os.environ["PLOT"], baselines={"no prompt": baseline},
            title=f"VSM13 L2 loss to Saudi Arabia, {meta['backbone']['model_id']}, population {pop}")
(root / "compare-summary.md").write_text(table + "\n")
print(table)
PY

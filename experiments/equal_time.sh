#!/usr/bin/env bash
# Equal wall time on the survey objective (issue 10): DE, CMA-ES, GD on the survey itself and GD on
# the synthetic labels (the paper's route), each given SECONDS of optimisation on the embedded model,
# target Saudi Arabia, T = 10, text init, same seed. Every final prompt is then re-scored by one
# SurveyFitness on the base wording (vsm13), on paraphrase 5 (vsm13@5) and on vsm13_blocks.
# Writes checkpoints/equal-*/, docs/img/equal_time.png and a Markdown table (stdout and
# checkpoints/equal-summary.md). Used for docs/gradient.md.
#
#   bash experiments/equal_time.sh                  # SECONDS_BUDGET=300
#   EXTRA="--model /tmp/tiny" SECONDS_BUDGET=20 bash experiments/equal_time.sh   # dry run on a tiny model
#
# Runs that already have a meta.json are reused (delete the folder to redo one). Each fit takes the
# shared CPU lock (one heavy job at a time on the dev machine); set LOCK= to skip it.
# -h / --help prints the comment block above and exits (scripts are smoke-tested with it).
case "${1:-}" in -h|--help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0;; esac
set -euo pipefail
cd "$(dirname "$0")/../.."
BIN=${BIN:-.venv/bin}
BUDGET=${SECONDS_BUDGET:-300}
ROOT=${ROOT:-checkpoints}
LOCK=${LOCK-/tmp/culturalign-cpu.lock}
PLOT=${PLOT:-docs/img/equal_time.png}
EXTRA=${EXTRA:-}
COMMON=(--run.root "$ROOT" --run.seed 0 --survey.heldout "[]" $EXTRA)

fit() {  # fit NAME ARGS...: one run unless it is already complete
  local name=$1; shift
  if [ -f "$ROOT/$name/meta.json" ]; then echo "== reuse $ROOT/$name" >&2; return; fi
  local cmd=("$BIN/culturalign" fit "$@" "${COMMON[@]}" --run.name "$name")
  echo "== ${cmd[*]}" >&2
  if [ -n "$LOCK" ]; then flock "$LOCK" "${cmd[@]}"; else "${cmd[@]}"; fi
}

# Black-box: the shipped CPU configs, stopped by time instead of by evaluations.
fit equal-de --config configs/de_cpu.yaml --search.max_time "$BUDGET" --search.budget 1000000
fit equal-cmaes --config configs/cmaes_cpu.yaml --search.max_time "$BUDGET" --search.budget 1000000
# GD on the survey loss (base wording only) and on the synthetic labels (paraphrases 1-5, CE; the
# base wording is unseen text for it). max_time counts training and validation.
fit equal-gd-survey --optimizer GD --data vsm13 --optimizer.lr 0.02 --optimizer.max_time "$BUDGET" \
  --optimizer.epochs 100000 --data.steps_per_epoch 3
fit equal-gd-synthetic --optimizer GD --data synthetic_vsm13 --cv.folds 1 --data.val_fraction 0.1 \
  --optimizer.lr 0.02 --optimizer.max_time "$BUDGET" --optimizer.epochs 100000

ROOT="$ROOT" PLOT="$PLOT" EXTRA="$EXTRA" "$BIN/python" - <<'PY'
"""Loss against seconds for the four runs, and one table of every final prompt on three wordings."""
import json
import os
import shlex
from pathlib import Path

import torch

from culturalign.checkpoint.format import load_prompt
from culturalign.blackbox.loop import read_history
from culturalign.model.backbone import load_backbone
from culturalign.plots import convergence
from culturalign.survey.definition import load_survey
from culturalign.survey.fitness import Answering, SurveyFitness
from culturalign.survey.scoring import Scoring, indices, target_loss
from culturalign.targets.table import resolve_target

root = Path(os.environ["ROOT"])
extra = shlex.split(os.environ.get("EXTRA", ""))
model = extra[extra.index("--model") + 1] if "--model" in extra else "embedded"
backbone = load_backbone(model)
target = resolve_target("SAU", "insights2021")
wordings = {"vsm13": "base wording", "vsm13@5": "paraphrase 5", "vsm13_blocks": "vsm13_blocks"}
fitness = {w: SurveyFitness(backbone, [load_survey(w)], target.scores, Scoring(), Answering()) for w in wordings}
none = {w: float(f(None).losses[0]) for w, f in fitness.items()}
# A neutral respondent answers the middle of every scale: every index equals its constant C.
survey, scoring = load_survey("vsm13"), Scoring()
middle = torch.full((1, len(survey.items)), (survey.num_answers + 1) / 2, dtype=torch.float64)
neutral = float(target_loss(indices(middle, survey, scoring.constants_for(survey)), survey.dimensions,
                            target.scores, scoring)[0])

runs = {"equal-de": ("DE", "base wording"), "equal-cmaes": ("CMA-ES", "base wording"),
        "equal-gd-survey": ("GD on the survey", "base wording"),
        "equal-gd-synthetic": ("GD on synthetic labels", "paraphrases 1-5 (CE)")}
curves = {}
rows = ["| no prompt | | | " + " | ".join(f"{none[w]:.2f}" for w in wordings) + " |",
        "| neutral respondent (every answer in the middle: all indices = C) | | | "
        + " | ".join(f"{neutral:.2f} ({neutral / none[w]:.2f}x)" for w in wordings) + " |"]
for name, (label, trained) in runs.items():
    run_dir = root / name
    meta = json.loads((run_dir / "meta.json").read_text())
    if (run_dir / "logs" / "metrics.csv").is_file():  # black-box: best so far after each generation
        hist = read_history(run_dir)
        xs, ys = [0.0] + [h["seconds"] for h in hist], [meta["init_prompt"]["loss"]] + [h["best_loss"] for h in hist]
        work = f"{int(hist[-1]['evaluations'])} surveys"
        spent = hist[-1]["seconds"]
    else:  # GD: the base-wording loss of the current prompt at each validation (SurveyFitnessCallback)
        fold = json.loads((run_dir / "fold0" / "result.json").read_text())
        hist = fold["survey"]["history"]
        xs, ys = [0.0] + [h["seconds"] for h in hist], [fold["survey"]["before"]["loss"]] + [h["loss"] for h in hist]
        work = f"{fold['global_step']} steps"
        spent = hist[-1]["seconds"] if hist else float("nan")
    curves[label] = (xs, ys)
    prompt, _ = load_prompt(run_dir, backbone)
    loss = {w: float(f(prompt).losses[0]) for w, f in fitness.items()}
    rows.append(f"| {label} | {trained} | {work} in {spent:.0f} s | "
                + " | ".join(f"{loss[w]:.2f} ({loss[w] / none[w]:.2f}x)" for w in wordings) + " |")

table = "\n".join([
    f"Model {backbone.model_id}, target {target.name}, L2, C = 50. No prompt: "
    + ", ".join(f"{wordings[w]} {none[w]:.2f}" for w in wordings) + ".",
    "",
    "| optimizer | trained on | work done | " + " | ".join(f"{wordings[w]} L2 (/ no prompt)" for w in wordings) + " |",
    "|---|---|---|" + "---|" * len(wordings),
    *rows,
])
Path(os.environ["PLOT"]).parent.mkdir(parents=True, exist_ok=True)
convergence(curves, os.environ["PLOT"], xlabel="seconds", ylabel="L2 loss, base wording",
            title=f"Equal time, {backbone.model_id} -> {target.name}", baselines={"no prompt": none["vsm13"]})
(root / "equal-summary.md").write_text(table + "\n")
print(table)
PY

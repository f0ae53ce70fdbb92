"""Plot a GD-on-the-survey run's losses against steps, each as a fraction of its no-prompt loss (issue 10).

Reads each run's fold0/result.json (the callback's history: training wordings, validation and
held-out wordings at every validation) and draws one panel per run: training-wording loss, the
validation wording, and each held-out wording, divided by the no-prompt loss of the same wording;
the dashed line is the 0.5x goal and the dot marks the returned checkpoint (the lowest validation
loss, or the last step with --optimizer.select last). It also prints each held-out curve's lowest
point and its value at the last validation. A reported wording whose file declares a split is
labelled by it (`development vsm13@5`, `test vsm13_blocks`; docs/robustness.md), not "held-out".

    RUNS="sau-cos120-ema sau-cos120-ema-s1 usa-cos120-ema ind-cos120-ema chn-cos120-ema sau-5w-cos120"
    python experiments/heldout_curves.py $(printf 'checkpoints/gd-survey-%s ' $RUNS) --out docs/img/heldout_curves.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def label(name: str) -> str:
    """A curve's legend: validation wordings as they are; others by their declared split."""
    if name.startswith("validation"):
        return name
    from culturalign.errors import CulturalignError
    from culturalign.survey.definition import load_survey

    try:
        split = load_survey(name).wording_split
    except CulturalignError:  # a wording file that has moved since the run
        split = None
    return f"{split} {name}" if split in ("development", "test") else f"held-out {name}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--out", default="docs/img/heldout_curves.png")
    args = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cols = min(3, len(args.runs))
    rows = -(-len(args.runs) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), sharey=True, squeeze=False)
    for ax in axes.flat[len(args.runs) :]:
        ax.set_visible(False)
    for ax, run in zip(axes.flat, args.runs):
        meta = json.loads((Path(run) / "meta.json").read_text())
        fold = json.loads((Path(run) / "fold0" / "result.json").read_text())
        s, history = fold["survey"], fold["survey"]["history"]
        steps = [h["step"] for h in history]
        ax.plot(steps, [h["loss"] / s["no_prompt"]["loss"] for h in history], label="training wordings", color="0.4")
        for name in s["no_prompt"]["heldout"]:
            ax.plot(
                steps,
                [h["heldout"][name] / s["no_prompt"]["heldout"][name] for h in history],
                label=label(name),
            )
        best = fold["best"]["step"]
        for name in s["no_prompt"]["heldout"]:  # the lowest point of each curve, for the text (not a result:
            low = min(history, key=lambda h: h["heldout"][name])  # picking by it would make it a validation wording)
            end = history[-1]  # what --optimizer.select last returns when training ends on a validation
            print(
                f"{Path(run).name}: {name} lowest {low['heldout'][name] / s['no_prompt']['heldout'][name]:.2f}x "
                f"at step {low['step']}; last validation (step {end['step']}) "
                f"{end['heldout'][name] / s['no_prompt']['heldout'][name]:.2f}x; returned step {best}: "
                f"{s['after']['heldout'][name] / s['no_prompt']['heldout'][name]:.2f}x"
            )
        for name, v in s["after"]["heldout"].items():
            if not name.startswith("validation"):
                ax.plot([best], [v / s["no_prompt"]["heldout"][name]], "o", color="k", ms=4)
        ax.axhline(0.5, ls="--", color="k", lw=0.8)
        ax.set_title(f"{Path(run).name}\n{meta['target']['name']}, seed {meta['seed']}", fontsize=9)
        ax.set_xlabel("optimizer step")
    axes[0][0].set_ylabel("L2 / no-prompt L2 (same wording)")
    axes[0][0].legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

"""Does a trained prompt move the same items the same way in every wording? (issue 10)

For each wording (base vsm13, paraphrases 1-5, vsm13_blocks) the script reads the expected answer
m of all 24 items with no prompt and with a run's prompt, and reports, per wording:

- r(no prompt): correlation of the bare model's 24 answers with its answers in the base wording
  (does the model read the items the same way when they are reworded?);
- r(shift): correlation of the prompt's per-item shift (m_prompt - m_none) with the mean shift over
  the run's training wordings (does the prompt act on the item, or on the sentence?);
- the L2 loss to the run's target with no prompt and with the prompt;
- the additive floor: the loss wording w would keep if the prompt moved every item by the same
  amount in every wording and hit the target exactly on average over the training wordings. It is
  the distance between w's no-prompt indices and the training wordings' mean no-prompt indices
  (idx_w = idx0_w + W shift = target + idx0_w - mean_t idx0_t): how much of the held-out loss comes
  from the bare model disagreeing with itself across wordings, before any prompt.

    python experiments/wording_transfer.py checkpoints/gd-survey-sau-val [more runs]

`--countries` needs no run: for every country of the table it prints the no-prompt loss on the
held-out wording and the additive floor as a fraction of it (the floor is the same for every
target, so a country near the bare model's own answers -- a small no-prompt loss -- is hard to
bring below 0.5x on a held-out wording, whatever the optimiser):

    python experiments/wording_transfer.py --countries --trained vsm13 vsm13@1 vsm13@2 vsm13@3 --heldout vsm13@5

`--debias` reads every wording with both answer orders averaged (as `--answering.debias true` does).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from culturalign.checkpoint.format import load_prompt
from culturalign.model.backbone import load_backbone
from culturalign.survey.definition import load_survey
from culturalign.survey.fitness import Answering, SurveyFitness
from culturalign.survey.scoring import Scoring
from culturalign.targets.table import load_table

WORDINGS = ["vsm13", "vsm13@1", "vsm13@2", "vsm13@3", "vsm13@4", "vsm13@5", "vsm13_blocks"]


def corr(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12))


def additive_floor(idx0: dict[str, torch.Tensor], trained: list[str], wording: str) -> float:
    """Distance of `wording`'s no-prompt indices from the training wordings' mean (see the docstring)."""
    return float((idx0[wording] - torch.stack([idx0[w] for w in trained]).mean(0)).norm())


def countries(backbone: object, trained: list[str], heldout: str, source: str, answering: Answering) -> None:
    dims = load_survey(heldout).dimensions
    neutral = {d: 50.0 for d in dims}  # indices do not depend on the target; the loss is computed below
    idx0 = {
        w: SurveyFitness(backbone, [load_survey(w)], neutral, Scoring(), answering)(None).indices[0].double() for w in [*trained, heldout]
    }
    floor = additive_floor(idx0, trained, heldout)
    rows = []
    for t in load_table(source):
        if set(dims) <= set(t.scores):
            target = torch.tensor([t.scores[d] for d in dims], dtype=torch.float64)
            rows.append((t.iso3, t.name, float((idx0[heldout] - target).norm())))
    rows.sort(key=lambda r: -r[2])
    print(f"additive floor on {heldout} (trained on {', '.join(trained)}): {floor:.2f}; {len(rows)} countries ({source})")
    print("| rank | country | L2 no prompt on held-out | floor / no-prompt loss |")
    print("|---|---|---|---|")
    for i, (iso, name, loss) in enumerate(rows, 1):
        print(f"| {i} | {name} ({iso}) | {loss:.1f} | {floor / loss:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="*")
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--countries", action="store_true", help="per-country floor table (no run needed)")
    ap.add_argument("--trained", nargs="+", default=["vsm13", "vsm13@1", "vsm13@2", "vsm13@3"])
    ap.add_argument("--heldout", default="vsm13@5")
    ap.add_argument("--source", default="insights2021")
    ap.add_argument("--debias", action="store_true", help="read every wording with both answer orders averaged")
    args = ap.parse_args()
    backbone = load_backbone(args.model)
    answering = Answering(debias=args.debias)
    if args.countries:
        countries(backbone, args.trained, args.heldout, args.source, answering)
    for run in args.runs:
        prompt, meta = load_prompt(Path(run), backbone)
        target = meta["target"]["scores"]
        # meta["survey"] names each training wording, e.g. "builtin:vsm13" or "builtin:vsm13#paraphrase2".
        trained = [f"vsm13@{s.split('#paraphrase')[-1]}" if "#paraphrase" in s else "vsm13" for s in meta["survey"]]
        m, loss, idx0 = {}, {}, {}
        for w in WORDINGS:
            fit = SurveyFitness(backbone, [load_survey(w)], target, Scoring(), answering)
            none, with_prompt = fit(None), fit(prompt)
            m[w] = (none.answers[0, 0].double(), with_prompt.answers[0, 0].double())
            loss[w] = (float(none.losses[0]), float(with_prompt.losses[0]))
            idx0[w] = none.indices[0].double()
        mean_shift = torch.stack([m[w][1] - m[w][0] for w in trained]).mean(0)
        floor = {w: additive_floor(idx0, trained, w) for w in WORDINGS}
        rows = [
            {
                "wording": w,
                "trained": w in trained,
                "r_no_prompt": round(corr(m[w][0], m["vsm13"][0]), 3),
                "r_shift": round(corr(m[w][1] - m[w][0], mean_shift), 3),
                "loss_no_prompt": round(loss[w][0], 2),
                "loss_prompt": round(loss[w][1], 2),
                "ratio": round(loss[w][1] / loss[w][0], 3),
                "additive_floor": round(floor[w], 2),
            }
            for w in WORDINGS
        ]
        print(f"\n{run} (trained on {', '.join(trained)}; target {meta['target']['name']})")
        print(
            "| wording | trained on | r(no prompt) vs base | r(shift) vs training mean | L2 no prompt | L2 prompt | ratio | "
            "additive floor (ratio) |"
        )
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            print(
                f"| {r['wording']} | {'yes' if r['trained'] else 'no'} | {r['r_no_prompt']:.2f} | {r['r_shift']:.2f} | "
                f"{r['loss_no_prompt']:.2f} | {r['loss_prompt']:.2f} | {r['ratio']:.2f}x | "
                f"{r['additive_floor']:.2f} ({r['additive_floor'] / r['loss_no_prompt']:.2f}x) |"
            )
        print(json.dumps({"run": run, "rows": rows}))


if __name__ == "__main__":
    main()

"""Content signal of each answer reading on one model: the table in docs/survey.md.

For every reading (logits, cloze with and without the option list, each with and without
calibration) it asks the base wording and a second layout in both label orders, with no soft
prompt, and prints the mass on the most common answer position and the per-item correlations
(culturalign.survey.content), over all items and within the items that share one scale.

    python experiments/content_table.py                       # the embedded model, all readings
    python experiments/content_table.py --model DIR --readings logits cloze --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from culturalign.model.backbone import load_backbone
from culturalign.survey.content import content_signal
from culturalign.survey.definition import load_survey
from culturalign.survey.fitness import Answering

# The goal of issue 16: a reading whose items correlate across layouts within one scale, with no
# answer position taking most of the mass.
GOAL_CORR, GOAL_MASS = 0.5, 0.5

READINGS: dict[str, dict[str, Any]] = {
    "logits": {"mode": "logits"},
    "logits+calibrate": {"mode": "logits", "calibrate": True},
    "cloze": {"mode": "cloze"},
    "cloze-sum": {"mode": "cloze", "length_norm": "sum"},
    "cloze-bare": {"mode": "cloze", "show_options": False},
    "cloze-bare-sum": {"mode": "cloze", "show_options": False, "length_norm": "sum"},
    "cloze+calibrate": {"mode": "cloze", "calibrate": True},
    "cloze-bare+calibrate": {"mode": "cloze", "show_options": False, "calibrate": True},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="readings: " + ", ".join(f"{k} = {v}" for k, v in READINGS.items()))
    p.add_argument("--model", default="embedded", help="backbone (as --model of culturalign)")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16")
    p.add_argument("--base", default="vsm13", help="base wording")
    p.add_argument("--compare", default="vsm13_blocks", help="the other layout")
    p.add_argument("--readings", nargs="+", default=list(READINGS), choices=list(READINGS))
    p.add_argument("--max-batch-rows", type=int, default=192)
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    return p.parse_args(argv)


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    backbone = load_backbone(args.model, args.dtype, "auto")
    base, other = load_survey(args.base), load_survey(args.compare)
    rows = []
    for name in args.readings:
        t0 = time.perf_counter()
        report = content_signal(backbone, base, other, Answering(**READINGS[name], max_batch_rows=args.max_batch_rows))
        rows.append({"reading": name, "seconds": round(time.perf_counter() - t0, 1), **report})
        print(f"{name}: {rows[-1]}", file=sys.stderr, flush=True)  # progress: a reading takes minutes on a CPU
    return rows


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.2f}"


def table(rows: list[dict[str, Any]], compare: str) -> str:
    ids = rows[0]["within_scale_items"]
    span = f"items {ids[0]}-{ids[-1]}"
    out = [f"| reading | mass on most common position | base vs {compare}: all 24 / {span} | "
           f"forward vs reverse order: all 24 / {span} | spread of answers, {span} | goal | seconds |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        corr, rev = r["corr_other_wording"], r["corr_reverse_order"]
        short_corr = GOAL_CORR - (corr["within_scale"] if corr["within_scale"] is not None else -1.0)
        short_mass = r["position_mass"] - GOAL_MASS
        goal = "met" if short_corr <= 0 and short_mass <= 0 else "missed by " + ", ".join(
            ([f"corr {short_corr:.2f}"] if short_corr > 0 else []) + ([f"mass {short_mass:.2f}"] if short_mass > 0 else []))
        out.append(f"| {r['reading']} | {r['position_mass']:.2f} (position {r['most_common_position']}) | "
                   f"{_f(corr['all'])} / {_f(corr['within_scale'])} | {_f(rev['all'])} / {_f(rev['within_scale'])} | "
                   f"{r['within_scale_spread']:.3f} | {goal} | {r['seconds']:.0f} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    rows = measure(args)
    print(table(rows, args.compare))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return rows


if __name__ == "__main__":
    main()

"""Content signal of each answer reading on one model: the table in docs/survey.md.

For every reading (logits, cloze with and without the option list, each with and without
calibration) it asks the base wording and a second layout in both label orders, with no soft
prompt, and prints the mass on the most common answer position and the per-item correlations
(culturalign.survey.content), over all items and within the items that share one scale.

    python experiments/content_table.py                       # the embedded model, all readings
    python experiments/content_table.py --model DIR --readings logits cloze --json out.json
    python experiments/content_table.py --from-json out.json   # the table again, from saved rows
    python experiments/content_table.py --readings cloze cloze-sum --compare-layouts 4 --layouts-seed 10000
        # against 4 development layouts (seeds 10000-10003) instead of one named wording: a choice
        # between readings made here reads no test wording or layout (docs/robustness.md)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from typing import Any

from culturalign.model.backbone import load_backbone
from culturalign.survey.content import content_signal
from culturalign.survey.definition import Survey, load_survey
from culturalign.survey.fitness import Answering
from culturalign.survey.layouts import apply, layout_split, sample_layouts

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
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="readings: " + ", ".join(f"{k} = {v}" for k, v in READINGS.items()),
    )
    p.add_argument("--model", default="embedded", help="backbone (as --model of culturalign)")
    p.add_argument("--dtype", default="auto", help="auto, float32, bfloat16")
    p.add_argument("--base", default="vsm13", help="base wording")
    p.add_argument("--compare", default="vsm13_blocks", help="the other layout")
    p.add_argument("--compare-layouts", type=int, default=0, help="compare with N generated layouts of the base wording instead")
    p.add_argument("--layouts-seed", type=int, default=10000, help="first layout seed (10000-19999: development)")
    p.add_argument("--readings", nargs="+", default=list(READINGS), choices=list(READINGS))
    p.add_argument("--max-batch-rows", type=int, default=192)
    p.add_argument("--json", default=None, help="also write the rows to this JSON file")
    p.add_argument("--from-json", default=None, help="print the table of rows saved by --json (no model run)")
    return p.parse_args(argv)


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    backbone = load_backbone(args.model, args.dtype, "auto")
    base = load_survey(args.base)
    others = compared(base, args)
    rows = []
    for name in args.readings:
        for label, other in others:
            t0 = time.perf_counter()
            report = content_signal(backbone, base, other, Answering(**READINGS[name], max_batch_rows=args.max_batch_rows))
            rows.append({"reading": name, "compare": label, "seconds": round(time.perf_counter() - t0, 1), **report})
            print(f"{name}: {rows[-1]}", file=sys.stderr, flush=True)  # progress: a reading takes minutes on a CPU
    return rows


def compared(base: Survey, args: argparse.Namespace) -> list[tuple[str, Survey]]:
    """(label, wording) the base is compared with: the named one, or N generated layouts of the base."""
    if not args.compare_layouts:
        return [(args.compare, load_survey(args.compare))]
    layouts = sample_layouts(args.compare_layouts, args.layouts_seed, base)
    last = args.layouts_seed + args.compare_layouts - 1
    print(f"layouts {args.layouts_seed}..{last}: {layout_split(args.layouts_seed)} split", file=sys.stderr)
    # content_signal asks every wording in both label orders itself, so a layout's own order is dropped:
    # its forward reading is then the listed 1..K order, as content_report assumes.
    return [(f"{base.wording}+layout{lay.seed}", apply(base, replace(lay, reverse=False))) for lay in layouts]


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:+.2f}"


def table(rows: list[dict[str, Any]], compare: str) -> str:
    ids = rows[0]["within_scale_items"]
    span = f"items {ids[0]}-{ids[-1]}"
    several = len({r.get("compare", compare) for r in rows}) > 1
    compare = "the layout" if several else compare
    out = [
        f"| reading | mass on most common position | base vs {compare}: all 24 / {span} | "
        f"same, both in reverse order | forward vs reverse order: all 24 / {span} | spread of answers, {span} | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        corr, rev = r["corr_other_wording"], r["corr_reverse_order"]
        crev = r.get("corr_other_wording_reverse") or {"all": None, "within_scale": None}
        short_corr = GOAL_CORR - (corr["within_scale"] if corr["within_scale"] is not None else -1.0)
        short_mass = r["position_mass"] - GOAL_MASS
        goal = (
            "met"
            if short_corr <= 0 and short_mass <= 0
            else "missed by "
            + ", ".join(([f"corr {short_corr:.2f}"] if short_corr > 0 else []) + ([f"mass {short_mass:.2f}"] if short_mass > 0 else []))
        )
        # Without the option list both orders ask the same question: their agreement says nothing.
        order = (
            "same question"
            if READINGS.get(r["reading"], {}).get("show_options") is False
            else f"{_f(rev['all'])} / {_f(rev['within_scale'])}"
        )
        label = f"{r['reading']} vs {r['compare']}" if several else r["reading"]
        out.append(
            f"| {label} | {r['position_mass']:.2f} (position {r['most_common_position']}) | "
            f"{_f(corr['all'])} / {_f(corr['within_scale'])} | {_f(crev['all'])} / {_f(crev['within_scale'])} | {order} | "
            f"{r['within_scale_spread']:.3f} | {goal} |"
        )
    return "\n".join(out + ([""] + summary(rows, span) if several else []))


def summary(rows: list[dict[str, Any]], span: str) -> list[str]:
    """Per reading, the mean correlation over the compared layouts (one layout's is noise: 14 items)."""
    out = [f"| reading | layouts | mean corr, {span} | same, both in reverse order | mean corr, all 24 |", "|---|---|---|---|---|"]
    for name in dict.fromkeys(r["reading"] for r in rows):
        mine = [r for r in rows if r["reading"] == name]
        out.append(
            f"| {name} | {len(mine)} | {_mean(mine, 'corr_other_wording', 'within_scale')} | "
            f"{_mean(mine, 'corr_other_wording_reverse', 'within_scale')} | {_mean(mine, 'corr_other_wording', 'all')} |"
        )
    return out


def _mean(rows: list[dict[str, Any]], key: str, part: str) -> str:
    vals = [r[key][part] for r in rows if r.get(key) and r[key][part] is not None]
    return _f(sum(vals) / len(vals)) if vals else "n/a"


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    args = parse_args(argv)
    if args.from_json:
        with open(args.from_json) as fh:
            rows = json.load(fh)
        print(table(rows, args.compare))
        return rows
    rows = measure(args)
    print(table(rows, args.compare))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return rows


if __name__ == "__main__":
    main()

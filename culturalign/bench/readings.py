"""What each answer reading costs: the default survey fitness re-timed in cloze and calibrated modes.

Same backbone, prompts, row budget and repeats as the default (logits) path of the same `bench`
run, so the ratio is the reading's own cost: cloze feeds each label's text after its row (on the
row's KV cache); calibration adds one content-free row per scale and order.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

import torch

from culturalign.bench.timing import timed
from culturalign.survey.fitness import SurveyFitness

READINGS: dict[str, dict[str, Any]] = {
    "logits+calibrate": {"mode": "logits", "calibrate": True},
    "cloze": {"mode": "cloze"},
    "cloze, question alone": {"mode": "cloze", "show_options": False},
    "cloze+calibrate": {"mode": "cloze", "calibrate": True},
}


def measure_readings(
    fitness: SurveyFitness, prompts: torch.Tensor, repeats: int, logits_per_s: float, progress: Callable[[str], None]
) -> dict[str, Any]:
    """candidates/s of each reading and its cost relative to the logits path (`logits_per_s`, same run)."""
    out = {}
    for name, change in READINGS.items():
        fit = SurveyFitness(fitness.backbone, fitness.surveys, fitness.target, fitness.scoring, replace(fitness.answering, **change))
        progress(f"reading {name}: {prompts.shape[0]} candidates x {repeats} repeats")
        fit(prompts[:1])  # warm-up, as for the default path
        best, times, _ = timed(lambda fit=fit: fit(prompts), fitness.backbone.device, repeats, warmup=0)
        per_s = prompts.shape[0] / best
        out[name] = {
            "candidates_per_s": per_s,
            "seconds_all": [round(t, 4) for t in times],
            "rows_per_candidate": fit.num_rows,
            "tokens_per_candidate": fit.tokens_per_candidate(prompts.shape[1]),
            "cost_vs_logits": logits_per_s / per_s,
        }
    return out


def format_readings(readings: dict[str, Any] | None, logits_per_s: float) -> list[str]:
    if not readings:
        return []
    lines = [
        "",
        "| answer reading | candidates/s | rows/candidate | cost vs logits |",
        "|---|---|---|---|",
        f"| logits (default) | {logits_per_s:.3f} | | 1 |",
    ]
    for name, r in readings.items():
        lines.append(f"| {name} | {r['candidates_per_s']:.3f} | {r['rows_per_candidate']} | {r['cost_vs_logits']:.2f}x |")
    return lines

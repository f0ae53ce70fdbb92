"""Cost of each answer reading next to the logits path, one process (docs/survey.md).

    python experiments/reading_cost.py                    # embedded model, 8 prompts, best of 2
    python experiments/reading_cost.py --model DIR --population 2 --repeats 1

The logits path is timed before and after the readings: the drift between the two says how much
the machine's load moved during the run. `culturalign bench` prints the same readings table.
"""

from __future__ import annotations

import argparse
import sys

import torch

from culturalign.bench.readings import format_readings, measure_readings
from culturalign.bench.timing import timed
from culturalign.model.backbone import load_backbone
from culturalign.model.soft_prompt import init_prompt
from culturalign.survey.definition import load_survey
from culturalign.survey.fitness import SurveyFitness
from culturalign.targets import resolve_target


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="embedded")
    p.add_argument("--dtype", default="auto")
    p.add_argument("--population", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--num-virtual-tokens", type=int, default=10)
    args = p.parse_args(argv)
    bb = load_backbone(args.model, args.dtype, "auto")
    fit = SurveyFitness(bb, load_survey("vsm13"), resolve_target("SAU").scores)
    prompts = torch.stack([init_prompt(bb, args.num_virtual_tokens, "random", seed=s) for s in range(args.population)])
    fit(prompts[:1])  # warm-up
    before, times, _ = timed(lambda: fit(prompts), bb.device, args.repeats, warmup=0)
    readings = measure_readings(fit, prompts, args.repeats, args.population / before, lambda m: print(m, file=sys.stderr, flush=True))
    after, _, _ = timed(lambda: fit(prompts), bb.device, args.repeats, warmup=0)
    print(f"{bb.dtype}: logits {before:.1f} s before and {after:.1f} s after the readings for {args.population} candidates (times {times})")
    print("\n".join(format_readings(readings, args.population / before)))
    return {"logits_seconds": [before, after], "readings": readings}


if __name__ == "__main__":
    main()

"""torch.profiler over the default survey fitness on the embedded model: the op table docs/benchmarks.md quotes.

    flock /tmp/culturalign-cpu.lock .venv/bin/python benchmarks/profile_fitness.py 192 48

Each argument is an `answering.max_batch_rows`; the population is max_batch_rows // 24 candidates
(one forward's worth), after one untimed warm-up call.
"""

from __future__ import annotations

import time

import torch
from torch.profiler import ProfilerActivity, profile

from culturalign.model.backbone import load_backbone
from culturalign.model.soft_prompt import init_prompt
from culturalign.survey.definition import load_survey
from culturalign.survey.fitness import Answering, SurveyFitness

SAU = {"PDI": 72, "IDV": 48, "MAS": 43, "UAI": 64, "LTO": 27, "IVR": 14}

if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("max_batch_rows", nargs="*", type=int, default=[192], help="answering.max_batch_rows values")
    args = parser.parse_args()
    bb = load_backbone("embedded")
    survey = load_survey("vsm13")
    prompts = torch.stack([init_prompt(bb, 10, "random", seed=i) for i in range(8)])
    for rows in args.max_batch_rows:
        fit = SurveyFitness(bb, survey, SAU, answering=Answering(max_batch_rows=rows))
        n = max(1, rows // fit.num_rows)
        fit(prompts[:n])
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            t = time.perf_counter()
            fit(prompts[:n])
            dt = time.perf_counter() - t
        print(f"max_batch_rows {rows}: {n} candidates in {dt:.2f} s = {dt / n:.3f} s/candidate")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14))

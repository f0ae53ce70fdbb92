"""Freed memory kept for reuse or handed back: the black-box survey's time, page faults and system CPU either way.

A black-box search scores generation after generation of the same shapes. With glibc's defaults,
every activation block above its 32 MB mmap ceiling is mapped afresh and its pages faulted in and
zero-filled again each time; `culturalign.model.heap.reused_heap` (which `run_blackbox` runs in)
keeps them. This times one generation (`--population` soft prompts, one survey call) both ways,
alternating in one process so that both see the same machine load, and prints per mode the median
seconds, minor page faults and system CPU seconds a generation. docs/optimizers.md ("Freed memory
kept for reuse") quotes:

    python benchmarks/survey_heap.py --population 8 --generations 3 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from contextlib import nullcontext
from typing import Any

import torch


def _generation(fitness: Any, prompts: torch.Tensor) -> dict[str, float]:
    before, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    fitness(prompts)
    seconds, after = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
    return {"seconds": seconds, "minor_faults": after.ru_minflt - before.ru_minflt, "system_s": after.ru_stime - before.ru_stime}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded", help="HF id or local path (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--dtype", default="auto", help="auto (bfloat16 where the CPU has it, else float32), float32, bfloat16")
    parser.add_argument("--population", type=int, default=8, help="soft prompts per generation (make run: 8)")
    parser.add_argument("--generations", type=int, default=3, help="timed generations per mode per round")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two modes")
    args = parser.parse_args(argv)

    from culturalign.model.backbone import load_backbone
    from culturalign.model.heap import reused_heap
    from culturalign.model.soft_prompt import init_prompt
    from culturalign.survey.definition import load_survey
    from culturalign.survey.fitness import SurveyFitness
    from culturalign.targets.table import resolve_target

    bb = load_backbone(args.model, dtype=args.dtype)
    fitness = SurveyFitness(bb, load_survey("vsm13"), resolve_target("SAU").scores)
    prompts = torch.stack([init_prompt(bb, 10, "random", seed=s) for s in range(args.population)])
    fitness(prompts)  # warm-up, untimed
    runs: dict[str, list[dict[str, float]]] = {"glibc defaults": [], "reused_heap": []}
    for _ in range(args.rounds):
        for mode, ctx in (("glibc defaults", nullcontext), ("reused_heap", reused_heap)):
            with ctx():
                fitness(prompts)  # the first generation in a mode grows the heap it then reuses: untimed
                runs[mode] += [_generation(fitness, prompts) for _ in range(args.generations)]
    out: dict[str, Any] = {"model": bb.model_id, "dtype": str(bb.dtype).removeprefix("torch."), "population": args.population}
    for mode, rows in runs.items():
        out[mode] = {k: statistics.median(r[k] for r in rows) for k in rows[0]} | {"generations": len(rows)}
    print("| mode | generations | s a generation (median) | minor page faults | system CPU s |")
    print("|---|---|---|---|---|")
    for mode in runs:
        m = out[mode]
        print(f"| {mode} | {m['generations']} | {m['seconds']:.2f} | {m['minor_faults']:.0f} | {m['system_s']:.2f} |")
    ratio = out["glibc defaults"]["seconds"] / out["reused_heap"]["seconds"]
    out["speedup"] = ratio
    print(f"reused_heap: {ratio:.3f}x the generations a second of glibc's defaults")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()

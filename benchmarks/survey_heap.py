"""Freed memory kept for reuse or handed back: the black-box survey's time, page faults and system CPU either way.

A black-box search scores generation after generation of the same shapes. With glibc's defaults,
every activation block above its mmap threshold is mapped afresh and its pages faulted in and
zero-filled again each time; `culturalign.model.heap.reused_heap` (which `run_blackbox` runs in)
keeps them. This times generations (`--population` soft prompts, one survey call each) both ways,
each mode in a fresh process (so "glibc defaults" is glibc as a process starts, adaptive threshold
included), the modes alternating `--rounds` times so that both see the same machine load, and prints
per mode the median seconds, minor page faults and system CPU seconds a generation.
docs/optimizers.md ("Freed memory kept for reuse") quotes:

    python benchmarks/survey_heap.py --population 8 --generations 2 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from contextlib import nullcontext
from typing import Any

MODES = ("glibc defaults", "reused_heap")


def _generation(fitness: Any, prompts: Any) -> dict[str, float]:
    before, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    fitness(prompts)
    seconds, after = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
    return {"seconds": seconds, "minor_faults": after.ru_minflt - before.ru_minflt, "system_s": after.ru_stime - before.ru_stime}


def one_mode(args: argparse.Namespace) -> dict[str, Any]:
    """In this process: load, one untimed generation (it grows the heap a mode then reuses), `--generations` timed."""
    import torch

    from culturalign.model.backbone import load_backbone
    from culturalign.model.heap import reused_heap
    from culturalign.model.soft_prompt import init_prompt
    from culturalign.survey.definition import load_survey
    from culturalign.survey.fitness import SurveyFitness
    from culturalign.targets.table import resolve_target

    bb = load_backbone(args.model, dtype=args.dtype)
    fitness = SurveyFitness(bb, load_survey("vsm13"), resolve_target("SAU").scores)
    prompts = torch.stack([init_prompt(bb, 10, "random", seed=s) for s in range(args.population)])
    with reused_heap() if args.only == "reused_heap" else nullcontext():
        fitness(prompts)
        rows = [_generation(fitness, prompts) for _ in range(args.generations)]
    return {"model": bb.model_id, "dtype": str(bb.dtype).removeprefix("torch."), "rows": rows}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded", help="HF id or local path (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--dtype", default="auto", help="auto (bfloat16 where the CPU has it, else float32), float32, bfloat16")
    parser.add_argument("--population", type=int, default=8, help="soft prompts per generation (make run: 8)")
    parser.add_argument("--generations", type=int, default=3, help="timed generations per mode per round")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two modes, each a fresh process")
    parser.add_argument("--only", choices=MODES, help=argparse.SUPPRESS)  # the child process's mode
    args = parser.parse_args(argv)
    if args.only:
        return one_mode(args)

    runs: dict[str, list[dict[str, float]]] = {m: [] for m in MODES}
    child: dict[str, Any] = {}
    base = [sys.executable, __file__, "--model", args.model, "--dtype", args.dtype]
    base += ["--population", str(args.population), "--generations", str(args.generations)]
    for _ in range(args.rounds):
        for mode in MODES:
            done = subprocess.run([*base, "--only", mode], capture_output=True, text=True, check=True)
            child = json.loads(done.stdout.strip().splitlines()[-1])
            runs[mode] += child["rows"]
    out: dict[str, Any] = {"model": child["model"], "dtype": child["dtype"], "population": args.population}
    for mode, rows in runs.items():
        out[mode] = {k: statistics.median(r[k] for r in rows) for k in rows[0]} | {"generations": len(rows)}
    print("| mode | generations | s a generation (median) | minor page faults | system CPU s |")
    print("|---|---|---|---|---|")
    for mode in MODES:
        m = out[mode]
        print(f"| {mode} | {m['generations']} | {m['seconds']:.2f} | {m['minor_faults']:.0f} | {m['system_s']:.2f} |")
    out["speedup"] = out["glibc defaults"]["seconds"] / out["reused_heap"]["seconds"]
    print(f"reused_heap: {out['speedup']:.3f}x the generations a second of glibc's defaults")
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    result = main()
    if "rows" in result:  # a child: its result on the last line of stdout, for the parent
        print(json.dumps(result))

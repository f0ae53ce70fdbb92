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

`--paths default paper_fair` also times the bench's fair paper-style path (the same candidates' full
rows, greedy decoding to each row's first number; `culturalign bench`, docs/benchmarks.md) in the same
processes, so `culturalign bench`'s headline ratio is read under both allocator modes in one run.
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
PATHS = ("default", "paper_fair")  # the survey fitness; the bench's fair paper-style baseline


def _generation(score: Any) -> dict[str, float]:
    before, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    score()
    seconds, after = time.perf_counter() - t, resource.getrusage(resource.RUSAGE_SELF)
    return {"seconds": seconds, "minor_faults": after.ru_minflt - before.ru_minflt, "system_s": after.ru_stime - before.ru_stime}


def one_mode(args: argparse.Namespace) -> dict[str, Any]:
    """In this process: load; per path one untimed generation (it grows the heap a mode then reuses), `--generations` timed."""
    import torch

    from culturalign.bench.first_number import DigitTables
    from culturalign.bench.survey_paths import paper_fair_answers
    from culturalign.model.backbone import load_backbone
    from culturalign.model.heap import reused_heap
    from culturalign.model.soft_prompt import init_prompt
    from culturalign.survey.definition import load_survey
    from culturalign.survey.fitness import SurveyFitness
    from culturalign.targets.table import resolve_target

    bb = load_backbone(args.model, dtype=args.dtype)
    fitness = SurveyFitness(bb, load_survey("vsm13"), resolve_target("SAU").scores)
    prompts = torch.stack([init_prompt(bb, 10, "random", seed=s) for s in range(args.population)])
    scorers = {"default": lambda: fitness(prompts)}
    if "paper_fair" in args.paths:
        tables = DigitTables.for_backbone(bb)
        scorers["paper_fair"] = lambda: paper_fair_answers(fitness, prompts, args.max_new_tokens, tables)
    rows: dict[str, list[dict[str, float]]] = {}
    with reused_heap() if args.only == "reused_heap" else nullcontext():
        for path in args.paths:
            scorers[path]()
            rows[path] = [_generation(scorers[path]) for _ in range(args.generations)]
    return {"model": bb.model_id, "dtype": str(bb.dtype).removeprefix("torch."), "rows": rows}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="embedded", help="HF id or local path (default: the embedded SmolLM2-135M-Instruct)")
    parser.add_argument("--dtype", default="auto", help="auto (bfloat16 where the CPU has it, else float32), float32, bfloat16")
    parser.add_argument("--population", type=int, default=8, help="soft prompts per generation (make run: 8)")
    parser.add_argument("--generations", type=int, default=3, help="timed generations per mode per round")
    parser.add_argument("--rounds", type=int, default=2, help="alternations of the two modes, each a fresh process")
    parser.add_argument(
        "--paths", nargs="+", choices=PATHS, default=["default"], help="what one generation runs (default: the survey fitness)"
    )
    parser.add_argument(
        "--max_new_tokens", type=int, default=32, help="paper_fair: new tokens decoded at most per row (as `culturalign bench`)"
    )
    parser.add_argument("--only", choices=MODES, help=argparse.SUPPRESS)  # the child process's mode
    args = parser.parse_args(argv)
    if args.only:
        return one_mode(args)

    runs: dict[str, dict[str, list[dict[str, float]]]] = {p: {m: [] for m in MODES} for p in args.paths}
    child: dict[str, Any] = {}
    base = [sys.executable, __file__, "--model", args.model, "--dtype", args.dtype, "--paths", *args.paths]
    base += ["--population", str(args.population), "--generations", str(args.generations), "--max_new_tokens", str(args.max_new_tokens)]
    for _ in range(args.rounds):
        for mode in MODES:
            done = subprocess.run([*base, "--only", mode], capture_output=True, text=True, check=True)
            child = json.loads(done.stdout.strip().splitlines()[-1])
            for path in args.paths:
                runs[path][mode] += child["rows"][path]
    out: dict[str, Any] = {"model": child["model"], "dtype": child["dtype"], "population": args.population, "paths": {}}
    print("| path | mode | generations | s a generation (median) | minor page faults | system CPU s |")
    print("|---|---|---|---|---|---|")
    for path, by_mode in runs.items():
        got = out["paths"][path] = {}
        for mode, rows in by_mode.items():
            m = got[mode] = {k: statistics.median(r[k] for r in rows) for k in rows[0]} | {"generations": len(rows)}
            print(f"| {path} | {mode} | {m['generations']} | {m['seconds']:.2f} | {m['minor_faults']:.0f} | {m['system_s']:.2f} |")
        got["speedup"] = got["glibc defaults"]["seconds"] / got["reused_heap"]["seconds"]
        print(f"{path}: reused_heap {got['speedup']:.3f}x the generations a second of glibc's defaults")
    if {"default", "paper_fair"} <= set(args.paths):
        fair = out["paths"]["paper_fair"]
        out["default_over_paper_fair"] = {m: fair[m]["seconds"] / out["paths"]["default"][m]["seconds"] for m in MODES}
        print("default over paper-style fair: " + ", ".join(f"{v:.2f}x with {m}" for m, v in out["default_over_paper_fair"].items()))
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    result = main()
    if "rows" in result:  # a child: its result on the last line of stdout, for the parent
        print(json.dumps(result))

"""What a resume costs: replaying N recorded evaluations into a freshly seeded optimizer.

Black-box state is the record of asks and tells (`culturalign.blackbox.replay`); resume replays
it. This times, for each optimizer and dimension, a run of N evaluations on a cheap quadratic
(the survey is not involved: only optimizer time counts), then the replay of its record, checks
that the replayed optimizer asks exactly what the original asks next, and prints one row each.

    python benchmarks/replay_cost.py --evaluations 10000 --dims 64,500 --optimizers DE,PSO,CMAES,RS
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from culturalign.blackbox.protocol import BlackBoxOptimizer, SearchSetup
from culturalign.blackbox.replay import AskTellRecord
from culturalign.optimizers.base import discover


def _fresh(name: str, dim: int, popsize: int, evaluations: int) -> BlackBoxOptimizer:
    opt = discover()[name](popsize=popsize)
    opt.setup(SearchSetup(dim=dim, budget=evaluations, sigma=0.5, seed=0))
    return opt


def measure(name: str, dim: int, popsize: int, evaluations: int) -> dict[str, float]:
    """Seconds of the original ask/tell loop and of the replay, and the record's size on disk."""
    original, record = _fresh(name, dim, popsize, evaluations), AskTellRecord()
    start = time.perf_counter()
    for _ in range(evaluations // popsize):
        z = original.ask()
        losses = ((z - 0.3) ** 2).sum(1)
        original.tell(z, losses)
        record.add(z, losses)
    run_s = time.perf_counter() - start
    state = record.state()
    replayed = _fresh(name, dim, popsize, evaluations)
    start = time.perf_counter()
    AskTellRecord.from_state(state, Path("benchmark")).replay(replayed, Path("benchmark"))
    replay_s = time.perf_counter() - start
    if not np.array_equal(original.ask(), replayed.ask()):
        raise SystemExit(f"{name} at dim {dim}: the replayed optimizer does not continue like the original")
    kib = sum(t.numel() * t.element_size() for t in state.values()) / 1024
    return {"run_s": run_s, "replay_s": replay_s, "record_kib": kib}


def machine() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    lines = cpuinfo.read_text().splitlines() if cpuinfo.is_file() else []
    model = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), None)
    return f"{model or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--evaluations", type=int, default=10_000, help="evaluations recorded, then replayed")
    parser.add_argument("--popsize", type=int, default=16, help="candidates per generation")
    parser.add_argument("--dims", default="64,500", help="comma-separated search dimensions")
    parser.add_argument("--optimizers", default="DE,PSO,CMAES,RS", help="comma-separated registered names")
    args = parser.parse_args(argv)
    print(f"# {machine()}; {args.evaluations} evaluations, popsize {args.popsize}")
    print("| optimizer | dim | original ask/tell s | replay s | record KiB |\n|---|---|---|---|---|")
    for dim in map(int, args.dims.split(",")):
        for name in args.optimizers.split(","):
            m = measure(name, dim, args.popsize, args.evaluations)
            print(f"| {name} | {dim} | {m['run_s']:.1f} | {m['replay_s']:.1f} | {m['record_kib']:.0f} |", flush=True)


if __name__ == "__main__":
    main()

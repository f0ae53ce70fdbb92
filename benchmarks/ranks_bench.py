"""Candidates/s of one DE run on 1 and 2 CPU processes (same seed, population, micro-batches).

    python benchmarks/ranks_bench.py --model /tmp/tinym
    flock /tmp/culturalign-cpu.lock python benchmarks/ranks_bench.py --model embedded --popsize 8 --budget 24

Runs `culturalign fit` three ways: 1 process with torch's default threads, 1 process with 1
thread (what one rank gets when Lightning puts 2 ranks on 2 cores), and 2 processes (Lightning
sets 1 thread per rank). Prints a Markdown table; steady state excludes the first generation.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path


def one_run(cmd: list[str], root: Path, name: str, threads: str | None, devices: int) -> dict[str, float]:
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    env.pop("OMP_NUM_THREADS", None)
    if threads:
        env["OMP_NUM_THREADS"] = threads
    extra = ["--run.root", str(root), "--run.name", name]
    if devices > 1:
        extra += ["--launch.devices", str(devices), "--launch.accelerator", "cpu"]
    subprocess.run(cmd + extra, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    meta = json.loads((root / name / "meta.json").read_text())
    from culturalign.blackbox.loop import read_history

    rows = read_history(root / name)  # the run's metrics log, one row per generation
    steady = (
        (rows[-1]["evaluations"] - rows[0]["evaluations"]) / (rows[-1]["seconds"] - rows[0]["seconds"]) if len(rows) > 1 else float("nan")
    )
    return {
        "evals": meta["evaluations"],
        "seconds": meta["seconds"],
        "overall": meta["evaluations"] / meta["seconds"],
        "steady": steady,
        "best_loss": meta["best_loss"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="/tmp/tinym")
    ap.add_argument("--popsize", type=int, default=16)
    ap.add_argument("--budget", type=int, default=64)
    ap.add_argument("--rows", type=int, default=48, help="--answering.max_batch_rows (48 = 2 candidates per forward)")
    ap.add_argument("--dtype", default="auto")
    args = ap.parse_args()
    exe = Path(sys.executable).with_name("culturalign")
    cmd = [
        str(exe),
        "fit",
        "--optimizer",
        "DE",
        "--model",
        args.model,
        "--model.dtype",
        args.dtype,
        "--optimizer.popsize",
        str(args.popsize),
        "--search.budget",
        str(args.budget),
        "--answering.max_batch_rows",
        str(args.rows),
        "--survey.heldout",
        "[]",
        "--run.resume",
        "false",
    ]
    print(f"model {args.model}, popsize {args.popsize}, budget {args.budget}, max_batch_rows {args.rows}, {os.cpu_count()} CPUs")
    print("| processes x threads | evaluations | loop seconds | candidates/s (all) | candidates/s (after gen 1) | best loss |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for label, threads, devices in (("1 x default", None, 1), ("1 x 1", "1", 1), ("2 x 1", None, 2)):
            r = one_run(cmd, Path(tmp), label.replace(" ", ""), threads, devices)
            print(
                f"| {label} | {r['evals']} | {r['seconds']:.1f} | {r['overall']:.2f} | {r['steady']:.2f} | {r['best_loss']:.6f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

"""Hyper-parameter study for the black-box fit: settings x seeds, one `culturalign fit` each.

Every run is the public CLI (`python -m culturalign fit --config CONFIG <overrides> --run.seed S`),
so a row of the table is a command anyone can paste. The study reads only what the run writes:
the JSON line it prints at the end, meta.json and logs/metrics.csv in its run folder. Results are
appended to `<root>/study.jsonl` as they finish, so an interrupted study continues where it
stopped (finished (setting, seed) pairs are skipped) and the table can be rebuilt at any time.

Decisions belong on the training objective (the loss on the wording fitted), which is what the
table reports: best loss / no-prompt loss, at fixed evaluation counts and at the end.

    python experiments/de_study.py --root /tmp/study --budget 160 --seeds 0 1 \
        --setting "base=" --setting "dim16=--search.dim 16" --setting "cr09=--optimizer.crossover 0.9"
    python experiments/de_study.py --root /tmp/study --table-only      # rebuild the table
    python experiments/de_study.py --root /tmp/de --also /tmp/rs --table-only --plot band.png   # two studies, one table and plot

On a shared machine pass `--lock FILE`: each run then holds an exclusive flock on FILE, so model
jobs of several people run one at a time.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

DEFAULT_CONFIG = str(Path(__file__).resolve().parents[1] / "configs" / "de_cpu.yaml")


def parse_setting(text: str) -> tuple[str, list[str]]:
    """'name=--flag value --flag2 value' -> (name, [flags])."""
    name, sep, flags = text.partition("=")
    if not sep or not name.strip():
        raise SystemExit(f"--setting {text!r}: write NAME=FLAGS, e.g. 'dim16=--search.dim 16' (FLAGS may be empty)")
    return name.strip(), shlex.split(flags)


@contextlib.contextmanager
def held(lock: str | None) -> Iterator[None]:
    if lock is None:
        yield
        return
    with open(lock, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def best_at(history: list[dict[str, float]], evaluations: int) -> float | None:
    """Best loss once `evaluations` candidates had been scored (None if the run stopped before)."""
    rows = [h for h in history if h["evaluations"] <= evaluations]
    if not history or history[-1]["evaluations"] < evaluations or not rows:
        return None
    return rows[-1]["best_loss"]


def read_csv(run_dir: Path) -> list[dict[str, float]]:
    """The run's per-generation metrics log (logs/metrics.csv), one dict per generation."""
    from culturalign.blackbox.loop import read_history

    return read_history(run_dir)


def run_one(args: argparse.Namespace, name: str, flags: list[str], seed: int) -> dict[str, Any]:
    run_name = f"{name}-s{seed}"
    cmd = [
        *shlex.split(args.python),
        "-m",
        "culturalign",
        "fit",
        "--config",
        args.config,
        *flags,
        "--run.seed",
        str(seed),
        "--run.root",
        args.root,
        "--run.name",
        run_name,
        "--run.resume",
        "false",
    ]
    if args.budget is not None:
        cmd[cmd.index("--config") + 2 : cmd.index("--config") + 2] = ["--search.budget", str(args.budget)]
    log = Path(args.root) / f"{run_name}.log"
    with held(args.lock):
        started = time.time()
        with open(log, "w") as out:
            rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
        wall = time.time() - started
    final = None
    for line in reversed(log.read_text().splitlines()):
        if line.startswith("{") and '"best_loss"' in line:
            final = json.loads(line)
            break
    if rc != 0 or final is None:
        raise SystemExit(f"{run_name} failed (exit {rc}); see {log}\n  {shlex.join(cmd)}")
    run_dir = Path(final["run_dir"])
    history = read_csv(run_dir)
    meta = json.loads((run_dir / "meta.json").read_text())
    base = final["no_prompt_loss"]
    return {
        "setting": name,
        "flags": shlex.join(flags),
        "seed": seed,
        "command": shlex.join(cmd),
        "no_prompt_loss": base,
        "init_loss": meta["init_prompt"]["loss"],
        "best_loss": final["best_loss"],
        "ratio": final["best_loss"] / base,
        "evaluations": final["evaluations"],
        "seconds": final["seconds"],
        "wall_seconds": round(wall, 1),
        "stop_reason": final["stop_reason"],
        "at": {str(n): (None if (b := best_at(history, n)) is None else b / base) for n in args.at},
        "last_mean_ratio": (history[-1]["mean_loss"] / base) if history else None,
        # The best-so-far curve travels with the row, so a committed study.jsonl can be plotted after
        # the run folders (usually under /tmp) are gone.
        "curve": [list(p) for p in curve_of(history, base)],
    }


def read_rows(root: Path) -> list[dict[str, Any]]:
    """A study's finished runs (its study.jsonl), each tagged with the root its run folders are in."""
    results = root / "study.jsonl"
    if not results.is_file():
        return []
    return [{**json.loads(ln), "root": str(root)} for ln in results.read_text().splitlines() if ln.strip()]


def spread(values: list[float]) -> str:
    if not values:
        return "-"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {statistics.stdev(values):.3f}"


def table(rows: list[dict[str, Any]], at: list[int]) -> str:
    order: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        order.setdefault(r["setting"], []).append(r)
    head = ["setting", "flags", "seeds"] + [f"ratio @{n}" for n in at] + ["final ratio", "per-seed final", "evaluations", "seconds"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, rs in order.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        cells = [name, f"`{rs[0]['flags']}`" if rs[0]["flags"] else "(config as is)", ",".join(str(r["seed"]) for r in rs)]
        for n in at:
            vals = [r["at"].get(str(n)) for r in rs]
            vals = [v for v in vals if v is not None]
            cells.append(spread(vals) + ("" if len(vals) == len(rs) else f" (n={len(vals)})"))
        cells += [
            spread([r["ratio"] for r in rs]),
            " / ".join(f"{r['ratio']:.2f}" for r in rs),
            "/".join(str(r["evaluations"]) for r in rs),
            "/".join(f"{r['seconds']:.0f}" for r in rs),
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def curve_of(history: list[dict[str, float]], no_prompt_loss: float) -> list[tuple[int, float]]:
    """A run's best-so-far curve from its metrics log: (evaluations, best / no-prompt loss) per generation."""
    return [(int(h["evaluations"]), h["best_loss"] / no_prompt_loss) for h in history]


def curves(rows: list[dict[str, Any]]) -> dict[str, list[list[tuple[int, float]]]]:
    """Per setting, one (evaluations, best / no-prompt) curve per seed: the row's own, else its run's metrics log.

    A row with neither (a study from before rows kept their curve, its folder since deleted) is left
    out of the plot with a note, rather than failing the table that the rows still give.
    """
    out: dict[str, list[list[tuple[int, float]]]] = {}
    for r in rows:
        run_dir = Path(r["root"]) / f"{r['setting']}-s{r['seed']}"
        if "curve" in r:
            curve = [(int(e), float(v)) for e, v in r["curve"]]
        elif run_dir.is_dir():
            curve = curve_of(read_csv(run_dir), r["no_prompt_loss"])
        else:
            print(f"plot: {r['setting']} seed {r['seed']} left out: no curve in its row and no run folder {run_dir}", file=sys.stderr)
            continue
        out.setdefault(r["setting"], []).append(curve)
    return out


def plot(rows: list[dict[str, Any]], path: str) -> None:
    """Best-so-far ratio against evaluations: the mean over seeds as a line, the min-max over seeds as a band.

    A seed's curve is a step function (the best only changes when a generation is scored), so each
    is read at every evaluation count any seed logged; the band stops where the shortest seed stopped.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, runs in curves(rows).items():
        end = min(c[-1][0] for c in runs if c)
        grid = sorted({e for c in runs for e, _ in c if e <= end})
        at = [[next(v for e, v in reversed(c) if e <= g) if c[0][0] <= g else c[0][1] for g in grid] for c in runs]
        mean = [statistics.fmean(col) for col in zip(*at)]
        (line,) = ax.plot(grid, mean, label=f"{name} (mean of {len(runs)} seeds)")
        ax.fill_between(grid, [min(col) for col in zip(*at)], [max(col) for col in zip(*at)], color=line.get_color(), alpha=0.2)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("evaluations (candidate prompts scored)")
    ax.set_ylabel("best loss / no-prompt loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog="See the module docstring for examples.")
    ap.add_argument("--config", default=DEFAULT_CONFIG, help="base config every setting overrides (default: configs/de_cpu.yaml)")
    ap.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=FLAGS",
        help="a named list of `culturalign fit` flags; repeat for more settings",
    )
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--budget", type=int, default=None, help="--search.budget for every run (default: the config's)")
    ap.add_argument("--at", type=int, nargs="+", default=[160, 320], help="evaluation counts the table reports")
    ap.add_argument("--root", required=True, help="run folders, logs and study.jsonl go here")
    ap.add_argument("--lock", default=None, help="file to flock around each run (one model job at a time)")
    ap.add_argument(
        "--python",
        default=sys.executable,
        help="interpreter that has culturalign installed (may carry a wrapper: '/usr/bin/time -v python')",
    )
    ap.add_argument("--table-only", action="store_true", help="print the table from study.jsonl and exit")
    ap.add_argument("--also", action="append", default=[], metavar="ROOT", help="another study's root whose rows join the table and plot")
    ap.add_argument("--plot", default=None, metavar="PNG", help="write the convergence plot (mean over seeds, min-max band) here")
    args = ap.parse_args(argv)

    root = Path(args.root)
    root.mkdir(parents=True, exist_ok=True)
    results = root / "study.jsonl"
    rows = read_rows(root)
    if not args.table_only:
        settings = [parse_setting(s) for s in args.setting] or [("config", [])]
        done = {(r["setting"], r["seed"]) for r in rows}
        for seed in args.seeds:  # seed-major: every setting gets seed 0 before any gets seed 1
            for name, flags in settings:
                if (name, seed) in done:
                    continue
                row = run_one(args, name, flags, seed)
                with open(results, "a") as f:
                    f.write(json.dumps(row) + "\n")
                rows.append({**row, "root": str(root)})
                print(
                    f"{name} seed {seed}: {row['best_loss']:.2f} / {row['no_prompt_loss']:.2f} = {row['ratio']:.3f}x "
                    f"after {row['evaluations']} evaluations, {row['seconds']:.0f} s ({row['stop_reason']})",
                    flush=True,
                )
    for other in args.also:
        rows += read_rows(Path(other))
    print(table(rows, args.at))
    if args.plot:
        plot(rows, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Hyper-parameter study for the black-box fit: settings x seeds, one `culturalign fit` each.

Every run is the public CLI (`python -m culturalign fit --config CONFIG <overrides> --run.seed S`),
so a row of the table is a command anyone can paste. The study reads only what the run writes:
the JSON line it prints at the end, meta.json and logs/metrics.csv in its run folder. Results are
appended to `<root>/study.jsonl` as they finish, so an interrupted study continues where it
stopped (finished (setting, seed) pairs are skipped) and the table can be rebuilt at any time.

Decisions belong on the training objective (the loss on the wording fitted), which is what the
table reports: best loss / no-prompt loss, at fixed evaluation counts, at fixed seconds of search
(`--at-seconds`, for equal wall time) and at the end.

A GD run on the survey (a config whose optimizer is GD, e.g. configs/gd_survey_cpu.yaml) is a row
too: its curve is the best training-wording loss seen at each validation, against optimizer steps
and against seconds; steps are not survey evaluations, so its "ratio @N" cells stay empty and it is
compared with the black-box rows by seconds only.

    python experiments/de_study.py --root /tmp/study --budget 160 --seeds 0 1 \
        --setting "base=" --setting "dim16=--search.dim 16" --setting "cr09=--optimizer.crossover 0.9"
    python experiments/de_study.py --root /tmp/study --table-only      # rebuild the table
    python experiments/de_study.py --root /tmp/de --also /tmp/rs --table-only --plot band.png   # two studies, one table and plot
    python experiments/de_study.py --root /tmp/gd --config configs/gd_survey_cpu.yaml --setting "gd=" \
        --also /tmp/de --at-seconds 300 700 --plot-x seconds --plot time.png                   # equal wall time

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


def value_at(curve: list[list[float]] | list[tuple[float, float]], x: float) -> float | None:
    """A best-so-far curve's value at x (its last point at or before x); None past the curve's end or
    before its first point, so a run that stopped early gets no number rather than a flattering one."""
    if not curve or curve[-1][0] < x or curve[0][0] > x:
        return None
    return [v for e, v in curve if e <= x][-1]


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
        if line.startswith("{") and '"run_dir"' in line:
            final = json.loads(line)
            break
    if rc != 0 or final is None:
        raise SystemExit(f"{run_name} failed (exit {rc}); see {log}\n  {shlex.join(cmd)}")
    reading = read_gd(Path(final["run_dir"])) if "best_loss" not in final else read_blackbox(Path(final["run_dir"]), final)
    row = {
        "setting": name,
        "flags": shlex.join(flags),
        "seed": seed,
        "command": shlex.join(cmd),
        **reading,
        "wall_seconds": round(wall, 1),
    }
    row["at"] = {str(n): read_at(row, "evaluations", n) for n in args.at}
    return row


def read_blackbox(run_dir: Path, final: dict[str, Any]) -> dict[str, Any]:
    """A black-box run's row fields: its final JSON line, meta.json and per-generation metrics log."""
    history = read_csv(run_dir)
    meta = json.loads((run_dir / "meta.json").read_text())
    base = final["no_prompt_loss"]
    return {
        "kind": "blackbox",
        "no_prompt_loss": base,
        "init_loss": meta["init_prompt"]["loss"],
        "best_loss": final["best_loss"],
        "ratio": final["best_loss"] / base,
        "evaluations": final["evaluations"],
        "seconds": final["seconds"],
        "stop_reason": final["stop_reason"],
        "last_mean_ratio": (history[-1]["mean_loss"] / base) if history else None,
        # The best-so-far curves travel with the row, so a committed study.jsonl can be plotted after
        # the run folders (usually under /tmp) are gone.
        "curve": [list(p) for p in curve_of(history, base)],
        "curve_seconds": [list(p) for p in curve_of(history, base, x="seconds")],
    }


def read_gd(run_dir: Path) -> dict[str, Any]:
    """A GD-on-the-survey run's row fields, from its fold's result.json (one fold: the survey objective).

    The curve is the best base-wording loss seen so far at each validation (the training objective,
    as a black-box run's best so far is); `best_loss` is the prompt the run saved, scored at the end.
    """
    fold = json.loads((run_dir / "fold0" / "result.json").read_text())
    survey = fold["survey"]
    base = survey["no_prompt"]["loss"]
    best, steps, secs = survey["before"]["loss"], [0], [0.0]
    ratios = [best / base]
    for h in survey["history"]:
        best = min(best, h["loss"])
        steps.append(h["step"])
        secs.append(h["seconds"])
        ratios.append(best / base)
    return {
        "kind": "gd",
        "no_prompt_loss": base,
        "init_loss": survey["before"]["loss"],
        "best_loss": survey["after"]["loss"],
        "ratio": survey["after"]["loss"] / base,
        "evaluations": fold["global_step"],  # optimizer steps, each one survey forward and backward
        "seconds": secs[-1],
        "stop_reason": "gd",
        "last_mean_ratio": None,
        "curve": [[e, r] for e, r in zip(steps, ratios)],
        "curve_seconds": [[t, r] for t, r in zip(secs, ratios)],
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


def table(rows: list[dict[str, Any]], at: list[int], at_seconds: list[float] | None = None) -> str:
    """One line per setting: mean ± std over its seeds at each evaluation count and each second mark.

    "evaluations" counts surveys scored for a black-box row and optimizer steps for a GD row.
    """
    at_seconds = at_seconds or []
    order: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        order.setdefault(r["setting"], []).append(r)
    head = (
        ["setting", "flags", "seeds"]
        + [f"ratio @{n}" for n in at]
        + [f"ratio @{t:g} s" for t in at_seconds]
        + ["final ratio", "per-seed final", "evaluations", "seconds"]
    )
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, rs in order.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        cells = [name, f"`{rs[0]['flags']}`" if rs[0]["flags"] else "(config as is)", ",".join(str(r["seed"]) for r in rs)]
        # Read from each curve, so `--table-only --at N` works for any N; "(n=k)" when only k seeds got that far.
        for x, marks in (("evaluations", at), ("seconds", at_seconds)):
            for mark in marks:
                vals = [v for r in rs if (v := read_at(r, x, mark)) is not None]
                cells.append(spread(vals) + ("" if len(vals) in (0, len(rs)) else f" (n={len(vals)})"))
        cells += [
            spread([r["ratio"] for r in rs]),
            " / ".join(f"{r['ratio']:.2f}" for r in rs),
            "/".join(str(r["evaluations"]) + (" steps" if r.get("kind") == "gd" else "") for r in rs),
            "/".join(f"{r['seconds']:.0f}" for r in rs),
        ]
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def curve_of(history: list[dict[str, float]], no_prompt_loss: float, x: str = "evaluations") -> list[tuple[float, float]]:
    """A run's best-so-far curve from its metrics log: (x, best / no-prompt loss) per generation, x being
    the evaluations scored or the seconds of search at the end of that generation."""
    cast = int if x == "evaluations" else float
    return [(cast(h[x]), h["best_loss"] / no_prompt_loss) for h in history]


def curve_for(row: dict[str, Any], x: str = "evaluations") -> list[tuple[float, float]] | None:
    """A row's best-so-far curve against evaluations or seconds: its own, else its run's metrics log, else None.

    A GD row has none against evaluations: its steps are not survey evaluations (its step curve stays in
    the row, but tables and plots by evaluations leave it out rather than mix the units).
    """
    if x == "evaluations" and row.get("kind") == "gd":
        return None
    key = "curve" if x == "evaluations" else "curve_seconds"
    if key in row:
        return [(float(e), float(v)) for e, v in row[key]]
    run_dir = Path(row["root"]) / f"{row['setting']}-s{row['seed']}"
    if row.get("kind", "blackbox") == "blackbox" and (run_dir / "logs" / "metrics.csv").is_file():
        return curve_of(read_csv(run_dir), row["no_prompt_loss"], x)
    return None


def read_at(row: dict[str, Any], x: str, mark: float) -> float | None:
    """A row's ratio at `mark` evaluations or seconds: from its curve, else the value it stored when it ran."""
    curve = curve_for(row, x)
    if curve is not None:
        return value_at(curve, mark)
    return row.get("at", {}).get(str(mark)) if x == "evaluations" else None


def curves(rows: list[dict[str, Any]], x: str = "evaluations") -> dict[str, list[list[tuple[float, float]]]]:
    """Per setting, one (x, best / no-prompt) curve per seed: the row's own, else its run's metrics log.

    A row with neither (a study from before rows kept their curve, its folder since deleted) is left
    out of the plot with a note, rather than failing the table that the rows still give.
    """
    out: dict[str, list[list[tuple[float, float]]]] = {}
    for r in rows:
        curve = curve_for(r, x)
        if curve is None:
            why = "GD steps are not evaluations" if r.get("kind") == "gd" else "no curve in its row and no run folder"
            print(f"plot: {r['setting']} seed {r['seed']} left out of the plot by {x}: {why}", file=sys.stderr)
            continue
        out.setdefault(r["setting"], []).append(curve)
    return out


def plot(rows: list[dict[str, Any]], path: str, x: str = "evaluations") -> None:
    """Best-so-far ratio against evaluations (or seconds): the mean over seeds as a line, the min-max over seeds as a band.

    A seed's curve is a step function (the best only changes when a generation is scored), so each
    is read at every evaluation count any seed logged; the band stops where the shortest seed stopped.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for name, runs in curves(rows, x).items():
        end = min(c[-1][0] for c in runs if c)
        grid = sorted({e for c in runs for e, _ in c if e <= end})
        at = [[next(v for e, v in reversed(c) if e <= g) if c[0][0] <= g else c[0][1] for g in grid] for c in runs]
        mean = [statistics.fmean(col) for col in zip(*at)]
        label = f"{name} (mean of {len(runs)} seeds)" if len(runs) > 1 else f"{name} (one seed)"
        (line,) = ax.plot(grid, mean, label=label)
        ax.fill_between(grid, [min(col) for col in zip(*at)], [max(col) for col in zip(*at)], color=line.get_color(), alpha=0.2)
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("evaluations (candidate prompts scored)" if x == "evaluations" else "seconds of search (GD: of training)")
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
    ap.add_argument("--at-seconds", type=float, nargs="+", default=[], help="seconds of search the table also reports (equal wall time)")
    ap.add_argument("--plot-x", choices=["evaluations", "seconds"], default="evaluations", help="the plot's x axis")
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
                    f"after {row['evaluations']} {'steps' if row['kind'] == 'gd' else 'evaluations'}, "
                    f"{row['seconds']:.0f} s ({row['stop_reason']})",
                    flush=True,
                )
    for other in args.also:
        rows += read_rows(Path(other))
    print(table(rows, args.at, args.at_seconds))
    if args.plot:
        plot(rows, args.plot, args.plot_x)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""experiments/de_study.py: the DE defaults study runs end to end on the tiny model and resumes from its results file."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[1] / "experiments" / "de_study.py"


def load_script():
    spec = importlib.util.spec_from_file_location("de_study", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_help_runs():
    out = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, check=True).stdout
    assert "--setting" in out and "--seeds" in out


def test_two_settings_one_seed_then_the_table_from_the_results_file(tiny_model_dir, tmp_path, capsys):
    study = load_script()
    tiny = (
        f"--model {tiny_model_dir} --model.dtype float32 --prompt.num_virtual_tokens 4 --survey.heldout [] "
        "--optimizer.popsize 4 --search.max_time null"
    )
    argv = [
        "--root",
        str(tmp_path),
        "--budget",
        "8",
        "--at",
        "4",
        "8",
        "--seeds",
        "0",
        "--setting",
        f"base={tiny}",
        "--setting",
        f"d4={tiny} --search.dim 4",
    ]
    assert study.main(argv) == 0
    rows = [json.loads(line) for line in (tmp_path / "study.jsonl").read_text().splitlines()]
    assert [(r["setting"], r["seed"], r["evaluations"]) for r in rows] == [("base", 0, 8), ("d4", 0, 8)]
    for r in rows:
        assert r["ratio"] == r["best_loss"] / r["no_prompt_loss"]
        assert abs(r["at"]["8"] - r["ratio"]) < 1e-4  # the history's best, rescored alone at the end
        assert r["stop_reason"] == "budget" and "--run.seed 0" in r["command"]
    capsys.readouterr()
    assert study.main(argv) == 0  # finished (setting, seed) pairs are skipped, the table is rebuilt
    assert len((tmp_path / "study.jsonl").read_text().splitlines()) == 2
    table = capsys.readouterr().out
    assert "| base |" in table and "| d4 |" in table and "ratio @8" in table
    # A second study's rows join the table and the convergence plot (mean over seeds, min-max band).
    # (Its runs are this study's two, copied under another setting name: what is tested is the
    # joining and plotting, and two more subprocess fits would double the test's time.)
    other = tmp_path / "other"
    other.mkdir()
    for seed, (src, row) in enumerate(zip(("base-s0", "d4-s0"), rows)):
        shutil.copytree(tmp_path / src, other / f"rs-s{seed}")
        with open(other / "study.jsonl", "a") as f:
            f.write(json.dumps({**row, "setting": "rs", "seed": seed}) + "\n")
    png = tmp_path / "band.png"
    assert study.main(["--root", str(tmp_path), "--also", str(other), "--table-only", "--at", "8", "--plot", str(png)]) == 0
    assert "| rs |" in capsys.readouterr().out and png.stat().st_size > 1000
    curves = study.curves(study.read_rows(other))
    assert len(curves["rs"]) == 2 and all(c[-1][0] == 8 for c in curves["rs"])
    # Each row carries its curve, the run's own log read back: the plot needs no run folder.
    for r in rows:
        assert r["curve"][-1][0] == 8 and abs(r["curve"][-1][1] - r["at"]["8"]) < 1e-9
        # ... and against seconds of search, the same best values at the same generations.
        assert [v for _, v in r["curve_seconds"]] == [v for _, v in r["curve"]]
        assert r["curve_seconds"][-1][0] <= r["seconds"] + 0.05  # the final line rounds to 0.1 s
    for seed in (0, 1):
        shutil.rmtree(other / f"rs-s{seed}")
    assert study.curves(study.read_rows(other))["rs"] == curves["rs"]
    # A row that predates stored curves, its folder gone, is left out of the plot with a note.
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "study.jsonl").write_text(json.dumps({k: v for k, v in rows[0].items() if k != "curve"}) + "\n")
    assert study.curves(study.read_rows(bare)) == {}
    assert "left out" in capsys.readouterr().err


def test_value_at_reads_the_curve_as_the_run_saw_it():
    study = load_script()
    curve = [(4, 3.0), (8, 2.0)]
    assert study.value_at(curve, 4) == 3.0 and study.value_at(curve, 6) == 3.0 and study.value_at(curve, 8) == 2.0
    assert study.value_at(curve, 12) is None  # the run stopped before: no number rather than a flattering one
    assert study.value_at(curve, 2) is None and study.value_at([], 4) is None


def test_a_gd_run_is_a_row_compared_by_seconds(tiny_model_dir, tmp_path, capsys):
    """configs/gd_survey_cpu.yaml through the study: its curve is read from the fold's survey history, by
    steps and by seconds; "@N evaluations" stays empty (steps are not surveys); the time plot draws it."""
    study = load_script()
    config = Path(__file__).parents[1] / "configs" / "gd_survey_cpu.yaml"
    tiny = f"--model {tiny_model_dir} --model.dtype float32 --prompt.num_virtual_tokens 4 --optimizer.max_time 3"
    png = tmp_path / "time.png"
    marks = ["--at", "8", "--at-seconds", "0", "1e6"]
    plot = ["--plot-x", "seconds", "--plot", str(png)]
    argv = ["--root", str(tmp_path), "--config", str(config), "--seeds", "0", *marks, "--setting", f"gd={tiny}", *plot]
    assert study.main(argv) == 0
    (row,) = [json.loads(line) for line in (tmp_path / "study.jsonl").read_text().splitlines()]
    result = json.loads((tmp_path / "gd-s0" / "fold0" / "result.json").read_text())
    assert row["kind"] == "gd" and row["evaluations"] == result["global_step"] > 0
    assert row["best_loss"] == result["survey"]["after"]["loss"] and row["at"] == {"8": None}
    assert row["curve"][0] == [0, row["init_loss"] / row["no_prompt_loss"]]
    ratios = [v for _, v in row["curve_seconds"]]
    assert ratios == sorted(ratios, reverse=True) and len(ratios) == len(result["survey"]["history"]) + 1  # best so far
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("| gd |"))
    cells = [c.strip() for c in line.strip("|").split("|")]
    assert cells[3] == "-" and cells[4] == f"{ratios[0]:.3f}" and cells[5] == "-"  # past the run's end: no number
    assert cells[-2].endswith("steps") and png.stat().st_size > 1000

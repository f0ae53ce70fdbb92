"""The CLI as users type it, on the tiny model."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from culturalign.cli import expand_shorthands, run


def test_help_lists_subcommands():
    out = subprocess.run([sys.executable, "-m", "culturalign.cli", "--help"], capture_output=True, text=True, check=True).stdout
    for verb in ("fit", "survey", "evaluate", "generate", "bench", "targets"):
        assert verb in out


def test_fit_help_shows_field_docs(capsys):
    # In-process: the subprocess test above already covers the entry point; a second interpreter
    # start (~10 s of imports on 2 cores) would only re-test the import.
    with pytest.raises(SystemExit) as exc:
        run(["fit", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--optimizer" in out and "--search.budget" in out and "Total candidate evaluations" in out


def test_shorthands():
    assert expand_shorthands(["fit", "--data", "cdeval_ivr", "--target=USA", "--json"]) == [
        "fit",
        "--data.name",
        "cdeval_ivr",
        "--target.country=USA",
        "--json_output=true",
    ]


def test_survey_json(tiny_model_dir, capsys):
    res = run(["survey", "--model", str(tiny_model_dir), "--model.dtype", "float32", "--json", "--target", "USA"])
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) >= {"dimensions", "target", "loss", "loss_kind", "constants", "answers"}
    assert printed["target"]["iso3"] == "USA" and len(printed["answers"]) == 24
    assert abs(printed["loss"] - res["loss"]) < 1e-9


def test_survey_plot_and_ckpt(tiny_model_dir, tmp_path, capsys):
    run(
        [
            "fit",
            "--optimizer",
            "DE",
            "--model",
            str(tiny_model_dir),
            "--optimizer.popsize",
            "4",
            "--search.budget",
            "8",
            "--run.root",
            str(tmp_path),
            "--run.name",
            "r1",
            "--survey.heldout",
            "[]",
        ]
    )
    out = run(["survey", "--model", str(tiny_model_dir), "--ckpt", str(tmp_path / "r1"), "--plot", str(tmp_path / "p.png")])
    meta = json.loads((tmp_path / "r1" / "meta.json").read_text())
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert abs(out["loss"] - meta["best_loss"]) < 1e-6


def test_generate_answers(tiny_model_dir, capsys):
    answers = run(["generate", "--model", str(tiny_model_dir), "--prompt", "Who are you?", "--max_new_tokens", "5"])
    assert len(answers) == 1 and isinstance(answers[0], str)


def test_bad_target_exits_2_with_one_line(tiny_model_dir, capsys):
    with pytest.raises(SystemExit) as exc:
        run(["survey", "--model", str(tiny_model_dir), "--target", "Saudi Arabiaa"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    # One line, and before the model was even loaded.
    assert err.startswith("culturalign: error:") and "Saudi Arabia" in err and len(err.splitlines()) == 1


def test_black_box_report_names_reported_wordings_by_their_split(tiny_model_dir, tmp_path):
    """vsm13_blocks declares `split: test` and has been read before: a report never calls it held out (GD's does the same)."""
    from tiny import tiny_fit_argv

    argv = tiny_fit_argv(tiny_model_dir, tmp_path, "--optimizer.popsize", "4", "--search.budget", "4", "--run.name", "r")
    argv[argv.index("--survey.heldout") + 1] = "[vsm13_blocks]"
    run(argv)
    report = (tmp_path / "r" / "report.md").read_text()
    assert "best on test vsm13_blocks" in report and "held-out" not in report
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    assert set(meta["heldout"]) == {"best on test vsm13_blocks", "no prompt on test vsm13_blocks"}

"""The architecture's promises, checked: per-method option groups, one-line refusals, small functions,
typed contexts, and one metrics log per black-box run that TensorBoard reads."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from culturalign.cli import run

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = sorted((ROOT / "culturalign").rglob("*.py")) + sorted((ROOT / "plugins").rglob("*.py"))


def help_groups(capsys, *argv: str) -> set[str]:
    with pytest.raises(SystemExit) as exc:
        run(["fit", *argv, "--help"])
    assert exc.value.code == 0
    return set(re.findall(r"^  --([a-z_]+)\.", capsys.readouterr().out, re.M))


def test_each_method_shows_only_its_own_option_groups(capsys):
    de = help_groups(capsys, "--optimizer", "DE")
    gd = help_groups(capsys, "--optimizer", "GD")
    assert "search" in de and not {"data", "cv", "sweep"} & de
    assert {"data", "cv", "sweep"} <= gd and "search" not in gd
    assert help_groups(capsys, "--optimizer", "RS") == de  # every black-box optimizer: the same groups


def test_another_methods_group_and_an_unknown_optimizer_are_refused_in_one_line(capsys):
    for argv, fragment in (
        (["--optimizer", "DE", "--data", "cdeval_ivr"], "--data is an option of GD, not of --optimizer DE"),
        (["--optimizer", "GD", "--search.budget", "8"], "--search is an option of"),
        (["--optimizer", "XYZ"], "--optimizer XYZ is not installed; installed: "),
    ):
        with pytest.raises(SystemExit) as exc:
            run(["fit", *argv])
        err = capsys.readouterr().err.strip().splitlines()
        assert exc.value.code == 2 and len(err) == 1 and fragment in err[0], err
    assert all(name in err[0] for name in ("DE", "GD", "RS", "CMAES", "PSO"))


def test_no_function_over_80_lines_of_code_and_no_untyped_context():
    long, untyped = [], []
    for path in PACKAGE:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                # The docstring does not count: a command's docstring is its --help text (one line per option).
                doc = ast.get_docstring(node, clean=False)
                doc_lines = len(doc.splitlines()) if doc else 0
                if node.end_lineno - node.lineno + 1 - doc_lines > 80:
                    long.append(f"{path.relative_to(ROOT)}:{node.name}")
                for arg in node.args.args + node.args.kwonlyargs:
                    if arg.arg in ("ctx", "context") and (arg.annotation is None or ast.unparse(arg.annotation) == "Any"):
                        untyped.append(f"{path.relative_to(ROOT)}:{node.name}")
    assert not long, f"functions over 80 lines: {long}"
    assert not untyped, f"context parameters typed Any or not at all: {untyped}"


def test_black_box_metrics_log_has_one_row_per_generation_readable_by_tensorboard(tiny_model_dir, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from culturalign.blackbox.loop import read_history

    run(
        [
            "fit",
            "--optimizer",
            "DE",
            "--optimizer.popsize",
            "4",
            "--search.budget",
            "12",
            "--model",
            str(tiny_model_dir),
            "--run.root",
            str(tmp_path),
            "--run.name",
            "tb",
            "--survey.heldout",
            "[]",
        ]
    )
    rows = read_history(tmp_path / "tb")
    assert [int(r["generation"]) for r in rows] == [1, 2, 3] and [int(r["evaluations"]) for r in rows] == [4, 8, 12]
    events = list((tmp_path / "tb" / "logs" / "tb").glob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    best = acc.Scalars("best_loss")
    assert [e.step for e in best] == [1, 2, 3]
    assert [e.value for e in best] == pytest.approx([r["best_loss"] for r in rows], rel=1e-6)
    assert not (tmp_path / "tb" / "logs" / "version_0").exists()  # no empty logger folder beside it

"""`--run.resume false` deletes only a culturalign run; a wording is never trained on and reported held out."""

from __future__ import annotations

import os

import pytest
from reliability_helpers import cli_error

from culturalign.cli import run


def fit(tiny_model_dir, root, name, *extra: str) -> list[str]:
    return [
        "fit",
        "--optimizer",
        "DE",
        "--optimizer.popsize",
        "2",
        "--search.budget",
        "2",
        "--model",
        str(tiny_model_dir),
        "--run.root",
        str(root),
        "--run.name",
        name,
        "--survey.heldout",
        "[]",
        *extra,
    ]


def test_resume_false_refuses_a_foreign_folder_and_keeps_its_files(tiny_model_dir, tmp_path, capsys):
    foreign = tmp_path / "thesis"
    foreign.mkdir()
    (foreign / "chapter1.tex").write_text("precious")
    message = cli_error(fit(tiny_model_dir, tmp_path, "thesis", "--run.resume", "false"), capsys)
    assert str(foreign) in message and "not a culturalign run" in message and "--run.name" in message
    assert (foreign / "chapter1.tex").read_text() == "precious"


def test_resume_false_refuses_a_symlink_and_leaves_its_target(tiny_model_dir, tmp_path, capsys):
    target = tmp_path / "elsewhere"
    target.mkdir()
    (target / "meta.json").write_text("{}")  # looks like a run, but the run path is a link to it
    os.symlink(target, tmp_path / "linked")
    message = cli_error(fit(tiny_model_dir, tmp_path, "linked", "--run.resume", "false"), capsys)
    assert "symbolic link" in message and "linked" in message
    assert (target / "meta.json").exists()


def test_resume_false_uses_an_empty_folder_and_restarts_a_run(tiny_model_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    run(fit(tiny_model_dir, tmp_path, "empty", "--run.resume", "false"))
    assert (tmp_path / "empty" / "meta.json").is_file() and (tmp_path / "empty" / ".culturalign-run").is_file()
    (tmp_path / "empty" / "stale.txt").write_text("from the earlier run")
    run(fit(tiny_model_dir, tmp_path, "empty", "--run.resume", "false"))  # a culturalign run: cleared, rerun
    assert not (tmp_path / "empty" / "stale.txt").exists() and (tmp_path / "empty" / "meta.json").is_file()


@pytest.mark.parametrize(
    "extra, named",
    [
        (["--survey.paraphrases", "5", "--survey.heldout", "vsm13@5"], "vsm13@5"),
        (["--survey.heldout", "vsm13"], "vsm13"),
        (["--survey.paraphrases", "2", "--survey.validation", "vsm13@2"], "vsm13@2"),
    ],
)
def test_a_trained_wording_reported_as_held_out_is_refused(tiny_model_dir, tmp_path, capsys, extra, named):
    argv = ["fit", "--optimizer", "GD", "--model", str(tiny_model_dir), "--run.root", str(tmp_path), "--run.name", "overlap"]
    message = cli_error(argv + extra, capsys)
    assert message.startswith(named) and "trained on" in message
    assert not (tmp_path / "overlap").exists()  # refused before anything was written


def test_synthetic_data_is_built_from_every_paraphrase_so_none_is_held_out(tiny_model_dir, tmp_path, capsys):
    argv = [
        "fit",
        "--optimizer",
        "GD",
        "--data",
        "synthetic_vsm13",
        "--data.limit",
        "4",
        "--model",
        str(tiny_model_dir),
        "--run.root",
        str(tmp_path),
        "--survey.heldout",
        "vsm13@3",
    ]
    message = cli_error(argv, capsys)
    assert "vsm13@3" in message and "synthetic_vsm13" in message

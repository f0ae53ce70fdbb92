"""Bad input gets one clear line: the CLI exits 2 with a message naming the value and the fix.

Every case goes through the public command line (`culturalign.cli.run`), as a user would type it.
The expected fragments are the offending value and the way out; docs/reliability.md quotes them.
"""

from __future__ import annotations

import json
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
import yaml
from reliability_helpers import cli_error

from culturalign.checkpoint.format import ADAPTER_WEIGHTS, META, load_last, save_last, save_prompt


@dataclass
class Files:
    """Bad files built once for the whole matrix."""

    root: Path
    model: Path
    no_template: Path
    mini_survey: Path


@pytest.fixture(scope="module")
def files(tmp_path_factory, tiny_model_dir, mini_survey) -> Files:
    from tiny import build_tiny

    root = tmp_path_factory.mktemp("bad")
    no_template = build_tiny(root / "no-template", chat_template=False)
    vsm13 = yaml.safe_load((Path(__file__).parents[2] / "culturalign/survey/frameworks/vsm13.yaml").read_text())

    def write(name: str, text: str) -> None:
        (root / name).write_text(text)

    # CDEval
    write("cdeval-empty.json", "")
    write("cdeval-malformed.json", '[{"Dimension": "IVR", "Question": ')
    write("cdeval-columns.json", json.dumps([{"Dimension": "IVR", "Domain": "work", "Question": "Q?", "Option 1": "a"}]))
    write("cdeval-ok.json", json.dumps([{"Dimension": "IVR", "Domain": "work", "Question": "Q?", "Option 1": "a", "Option 2": "b"}]))
    # Survey files
    write("survey-23-items.yaml", yaml.safe_dump({"framework": "vsm13", "items": vsm13["items"][:23]}))
    write("survey-4-labels.yaml", yaml.safe_dump({"framework": "vsm13", "scales": {k: v[:4] for k, v in vsm13["scales"].items()}}))
    mini = yaml.safe_load(mini_survey.read_text())
    write("survey-formula-item.yaml", yaml.safe_dump({**mini, "formulas": {"PDI": [[35, 1, 9]]}}))
    write("survey-formula-shape.yaml", yaml.safe_dump({**mini, "formulas": {"PDI": [[35, 1]]}}))
    write("survey-bad.yaml", "items: [\n  - {id: 1, text: x\n")
    # Checkpoints: a valid one, then one broken copy per case.
    prompt = torch.randn(2, 32)
    meta = {"backbone": {"model_id": str(tiny_model_dir.resolve())}, "num_virtual_tokens": 2}
    save_prompt(root / "ckpt-ok", prompt, meta)
    save_prompt(root / "ckpt-other-model", prompt, {**meta, "backbone": {"model_id": "someone/else-7b"}})
    save_prompt(root / "ckpt-hidden-64", torch.randn(2, 64), {**meta, "backbone": {"model_id": "someone/else-7b"}})
    for name in ("ckpt-truncated", "ckpt-meta-json", "ckpt-meta-T", "ckpt-pickle"):
        shutil.copytree(root / "ckpt-ok", root / name)
    weights = (root / "ckpt-ok" / ADAPTER_WEIGHTS).read_bytes()
    (root / "ckpt-truncated" / ADAPTER_WEIGHTS).write_bytes(weights[: len(weights) // 2])
    (root / "ckpt-meta-json" / META).write_text('{"backbone": {"model_id": ')
    (root / "ckpt-meta-T" / META).write_text(json.dumps({**meta, "num_virtual_tokens": 7}))
    with open(root / "ckpt-pickle" / ADAPTER_WEIGHTS, "wb") as f:
        pickle.dump({"prompt_embeddings": prompt}, f)  # what torch.save/.bin adapters hold
    return Files(root, tiny_model_dir, no_template, mini_survey)


def _model(f: Files) -> list[str]:
    return ["--model", str(f.model), "--model.dtype", "float32", "--model.device", "cpu"]


def _gd(f: Files, *extra: str) -> list[str]:
    return ["fit", "--optimizer", "GD", "--run.root", str(f.root / "runs"), "--survey.heldout", "[]", *_model(f), *extra]


def _fit(f: Files, *extra: str) -> list[str]:
    return ["fit", "--run.root", str(f.root / "runs"), "--survey.heldout", "[]", *_model(f), *extra]


def _survey(f: Files, *extra: str) -> list[str]:
    return ["survey", *_model(f), *extra]


# case id -> (argv, fragments the message must contain: the bad value, then the fix)
CASES: dict[str, tuple[Callable[[Files], list[str]], tuple[str, ...]]] = {
    # CDEval data (GD)
    "cdeval-missing": (
        lambda f: _gd(f, "--data", "cdeval_ivr", "--data.path", str(f.root / "nope.json")),
        ("nope.json does not exist", "pass --data.path"),
    ),
    "cdeval-empty": (
        lambda f: _gd(f, "--data", "cdeval_ivr", "--data.path", str(f.root / "cdeval-empty.json")),
        ("cdeval-empty.json is empty", "pass --data.path"),
    ),
    "cdeval-malformed": (
        lambda f: _gd(f, "--data", "cdeval_ivr", "--data.path", str(f.root / "cdeval-malformed.json")),
        ("cdeval-malformed.json is not valid JSON", "check the file"),
    ),
    "cdeval-missing-column": (
        lambda f: _gd(f, "--data", "cdeval_ivr", "--data.path", str(f.root / "cdeval-columns.json")),
        ("row 1", "lacks Option 2", "fix or drop it"),
    ),
    "cdeval-unknown-dimension": (
        lambda f: _gd(f, "--data", "cdeval_xyz", "--data.path", str(f.root / "cdeval-ok.json")),
        ("'cdeval_xyz' is unknown", "use one of cdeval_pdi"),
    ),
    # Survey wording files
    "survey-item-count": (
        lambda f: _survey(f, "--survey", str(f.root / "survey-23-items.yaml")),
        ("has 23 items but framework 'vsm13' has 24", "give all of them"),
    ),
    "survey-scale": (
        lambda f: _survey(f, "--survey", str(f.root / "survey-4-labels.yaml")),
        ("survey-4-labels.yaml", "scales have 4 labels but framework 'vsm13' has 5", "give 5 labels per scale"),
    ),
    "survey-formula-item": (
        lambda f: _survey(f, "--survey", str(f.root / "survey-formula-item.yaml")),
        ("formula PDI names item 9", "outside 1..4"),
    ),
    "survey-formula-shape": (
        lambda f: _survey(f, "--survey", str(f.root / "survey-formula-shape.yaml")),
        ("formula PDI", "[weight, plus_item, minus_item]", "[[35, 1]]"),
    ),
    "survey-bad-yaml": (
        lambda f: _survey(f, "--survey", str(f.root / "survey-bad.yaml")),
        ("survey-bad.yaml", "is not valid YAML", "fix the syntax"),
    ),
    "survey-missing": (
        lambda f: _survey(f, "--survey", str(f.root / "nope.yaml")),
        ("nope.yaml", "neither a built-in survey", "check the path"),
    ),
    # Targets
    "target-unknown-country": (
        lambda f: _survey(f, "--target", "Atlantis"),
        ("unknown country 'Atlantis'", "culturalign targets", "six scores"),
    ),
    "target-out-of-range": (lambda f: _survey(f, "--target", "72,48,43,640,27,14"), ("score for UAI is '640'", "within 0..150")),
    "target-count": (lambda f: _survey(f, "--target", "72,48"), ("got 2", "e.g. 72,48,43,64,27,14")),
    # Checkpoints
    "ckpt-other-model": (
        lambda f: _survey(f, "--ckpt", str(f.root / "ckpt-other-model")),
        ("trained on 'someone/else-7b'", "--model someone/else-7b", "--force true"),
    ),
    "ckpt-hidden-size": (
        lambda f: _survey(f, "--ckpt", str(f.root / "ckpt-hidden-64")),
        ("hidden size 64", "has 32", "use the backbone it was trained on"),
    ),
    "ckpt-truncated": (
        lambda f: _survey(f, "--ckpt", str(f.root / "ckpt-truncated")),
        ("adapter_model.safetensors is not a valid safetensors file", "truncated", "restore the file"),
    ),
    "ckpt-meta-not-json": (
        lambda f: _survey(f, "--ckpt", str(f.root / "ckpt-meta-json")),
        ("meta.json is not valid JSON", "restore it or re-run"),
    ),
    "ckpt-meta-edited": (
        lambda f: _survey(f, "--ckpt", str(f.root / "ckpt-meta-T")),
        ("num_virtual_tokens=7 but the weights have 2", "meta.json was edited", "restore it or re-run"),
    ),
    "ckpt-pickle": (lambda f: _survey(f, "--ckpt", str(f.root / "ckpt-pickle")), ("not a valid safetensors file", "pickles are refused")),
    "ckpt-missing": (lambda f: _survey(f, "--ckpt", str(f.root / "nope")), ("/nope' is not a directory", "pass a run folder")),
    # Models
    "model-missing-dir": (
        lambda f: ["survey", "--model", str(f.root / "no-such-model")],
        ("no-such-model': no such directory", "--model embedded"),
    ),
    "model-hub-offline": (
        lambda f: ["survey", "--model", "nobody/no-such-model"],
        ("'nobody/no-such-model' could not be loaded", "offline", "--model embedded"),
    ),
    "model-no-chat-template": (
        lambda f: ["survey", "--model", str(f.no_template), "--model.dtype", "float32"],
        ("no-template", "has no chat template", "use an instruct/chat model"),
    ),
    # Numbers
    "popsize-1": (lambda f: _fit(f, "--optimizer", "DE", "--optimizer.popsize", "1"), ("optimizer.popsize=1", "must be >= 2", "try 16")),
    "budget-0": (lambda f: _fit(f, "--search.budget", "0"), ("search.budget=0", "must be >= 1", "try 192")),
    "T-0": (lambda f: _fit(f, "--prompt.num_virtual_tokens", "0"), ("num_virtual_tokens=0", "must be >= 1", "try 10")),
    "lr-negative": (lambda f: _fit(f, "--optimizer", "GD", "--optimizer.lr", "-0.1"), ("optimizer.lr=-0.1", "must be > 0", "try 0.01")),
    # Answers
    "generate-no-answer-in-range": (
        lambda f: _survey(f, "--answering.mode", "generate", "--answering.max_new_tokens", "2"),
        ("gave no answer 1..5 to any of the 24 questions", "--answering.mode logits"),
    ),
    "run-name-traversal": (lambda f: _fit(f, "--run.name", "../../etc"), ("'../../etc'", "no '/' or '..'", "e.g. sau-de")),
    # Wordings
    "paraphrase-number": (
        lambda f: _survey(f, "--survey", "vsm13@9"),
        ("has no paraphrase 9", "use a paraphrase number its file has (vsm13: 1..5)"),
    ),
    "validation-is-heldout": (
        lambda f: _fit(f, "--optimizer", "GD", "--survey.validation", "vsm13@4", "--survey.heldout", "vsm13@4"),
        ("--survey.validation ['vsm13@4'] is also in --survey.heldout", "list it in one of the two"),
    ),
    "validation-with-DE": (lambda f: _fit(f, "--survey.validation", "vsm13@4"), ("picks a GD checkpoint", "use --survey.heldout")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_gets_one_clear_line(case, files, capsys):
    argv, fragments = CASES[case]
    message = cli_error(argv(files), capsys)
    print(f"{case}: {message}")  # the table in docs/reliability.md quotes these
    for fragment in fragments:
        assert fragment in message, f"{case}: {fragment!r} not in {message!r}"
    assert "Traceback" not in message and "\n" not in message


def test_bad_input_leaves_no_run_folder_behind(files, capsys):
    """Errors in the arguments come before the run folder is created."""
    cli_error(_fit(files, "--search.budget", "0", "--run.name", "never-made"), capsys)
    assert not (files.root / "runs" / "never-made").exists()


def test_tampered_resume_state_is_refused_not_run(fit_cmd, tmp_path, capsys):
    """A `last/` holding an optimizer pickle that names os.system stops the resume with exit 2, unread; nothing runs."""
    from culturalign.cli import run

    run(fit_cmd(budget=8))
    run_dir = tmp_path / "runs" / "rel"
    prompt, meta, state = load_last(run_dir)
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            import os

            return os.system, (f"touch {marker}",)

    save_last(run_dir, prompt, meta, {**state, "optimizer": pickle.dumps(Exploit())})  # as culturalign <= 0.1 stored it
    message = cli_error(fit_cmd(budget=16), capsys)
    assert message == (
        f"{run_dir / 'last'} holds a pickled optimizer state from an older culturalign, which is no "
        "longer read (a pickle can run code); pass --run.resume false to start the run over"
    )
    assert not marker.exists()

    # A record whose asks were edited: the replay refuses at the first generation that differs.
    digests = state["asks_sha256"].clone()
    digests[1, 0] ^= 1
    save_last(run_dir, prompt, meta, {**state, "asks_sha256": digests})
    message = cli_error(fit_cmd(budget=16), capsys)
    assert message.startswith(f"cannot resume {run_dir}: DE asks other candidates than the run recorded at generation 2 of 2")

    # The same with a pickle file dropped in place of last/state.safetensors.
    (run_dir / "last" / "state.safetensors").write_bytes(pickle.dumps(Exploit()))
    message = cli_error(fit_cmd(budget=16), capsys)
    assert "state.safetensors is not a valid safetensors file" in message and "pickles are refused" in message
    assert not marker.exists()

"""Helpers of the reliability suite (imported by its tests; fixtures live in conftest.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from culturalign.cli import run

REPO = Path(__file__).resolve().parents[2]

MINI_SURVEY = """\
name: mini
framework: mini
instruction: Answer with a single number from 1 to 5.
scales:
  importance: [of utmost importance, very important, of moderate importance, of little importance, of no importance]
items:
  - {id: 1, text: time for your family, scale: importance}
  - {id: 2, text: a boss you respect, scale: importance}
  - {id: 3, text: recognition for good work, scale: importance}
  - {id: 4, text: security of employment, scale: importance}
formulas:
  PDI: [[35, 1, 2]]
  IDV: [[35, 3, 4]]
"""


def fit_args(model: Path, survey: Path, root: Path, *extra: str, budget: int = 16, popsize: int = 4) -> list[str]:
    """A small DE fit on the tiny model: `budget / popsize` generations of the four-item survey."""
    return [
        "fit",
        "--optimizer",
        "DE",
        "--optimizer.popsize",
        str(popsize),
        "--model",
        str(model),
        "--model.dtype",
        "float32",
        "--model.device",
        "cpu",
        "--survey",
        str(survey),
        "--survey.heldout",
        "[]",
        "--prompt.num_virtual_tokens",
        "2",
        "--search.dim",
        "8",
        "--search.budget",
        str(budget),
        "--run.root",
        str(root),
        "--run.name",
        "rel",
        *extra,
    ]


def cli_error(argv: list[str], capsys) -> str:
    """Run the CLI expecting a user error: asserts exit code 2 and one line on stderr, returns the message."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exc:
        run(argv)
    assert exc.value.code == 2, f"exit code {exc.value.code}, expected 2 for {argv}"
    err = capsys.readouterr().err.strip().splitlines()
    assert err, f"no message on stderr for {argv}"
    message = err[-1]
    assert message.startswith("culturalign: error: "), message
    return message[len("culturalign: error: ") :]


def start_cli(argv: list[str], **popen: Any) -> subprocess.Popen:
    """`culturalign <argv>` in a child process (the console script's code path), output captured."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen(
        [sys.executable, "-c", "from culturalign.cli import main; main()", *argv],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        **popen,
    )


def last_step(run_dir: Path) -> int:
    """Generation of the complete resume point on disk (0 when there is none yet)."""
    from culturalign.checkpoint.format import load_last

    found = load_last(run_dir)
    return 0 if found is None else int(found[1]["step"])


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0, poll: float = 0.002) -> bool:
    """Poll until predicate() is true; False if the process ended first (its output is in the assert)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return False
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for the child process")


def meta_step(run_dir: Path) -> int:
    """Step recorded in last/meta.json right now (-1 if missing or mid-swap); cheap enough to poll."""
    try:
        return int(json.loads((run_dir / "last" / "meta.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return -1

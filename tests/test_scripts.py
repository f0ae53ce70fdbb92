"""Every script in benchmarks/, experiments/ and examples/ answers --help, and none names a path of one machine."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = sorted(
    p for folder in ("benchmarks", "experiments", "examples") for p in (ROOT / folder).rglob("*") if p.suffix in (".py", ".sh", ".sbatch")
)
# Absolute paths of our dev machines or a user's home; /tmp and /path/to placeholders are fine.
MACHINE_PATH = re.compile(r"(/work/|/home/|/Users/|/shared/)")


def test_the_script_folders_are_not_empty():
    assert {p.parent.name for p in SCRIPTS} >= {"benchmarks", "experiments", "slurm"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_script_answers_help(script: Path):
    cmd = [sys.executable, str(script), "--help"] if script.suffix == ".py" else ["bash", str(script), "--help"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert len(out.stdout.strip().splitlines()) >= 2  # says what it does, not just a usage line


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(ROOT)))
def test_script_names_no_machine_specific_path(script: Path):
    hits = [line for line in script.read_text().splitlines() if MACHINE_PATH.search(line)]
    assert not hits, hits

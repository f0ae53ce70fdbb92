"""README's file tree (## Files) lists every tracked file, and nothing that is not there."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def readme_tree() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"## Files\n\n```\n(.*?)```", text, re.S)
    assert block, "README.md has no ## Files block"
    return [line.split()[0] for line in block.group(1).splitlines() if line.strip()]


def tracked() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [p for p in out.splitlines() if (ROOT / p).exists()]


def test_every_tracked_file_is_in_the_readme_tree():
    listed = readme_tree()
    folders = tuple(p for p in listed if p.endswith("/"))
    missing = [p for p in tracked() if p not in listed and not p.startswith(folders)]
    assert not missing, f"add these to README.md ## Files: {missing}"


def test_every_path_in_the_readme_tree_exists():
    gone = [p for p in readme_tree() if not (ROOT / p).exists()]
    assert not gone, f"README.md ## Files lists paths that do not exist: {gone}"


def test_install_instructions_name_the_pinned_torch():
    """README's CPU-wheel command, the Makefile's TORCH_VERSION and pyproject's pin name one torch version."""
    pin = re.search(r'"torch==([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    assert re.search(r"^TORCH_VERSION := ([\d.]+)$", (ROOT / "Makefile").read_text(), re.M).group(1) == pin
    readme = (ROOT / "README.md").read_text()
    assert f"pip install torch=={pin} --index-url https://download.pytorch.org/whl/cpu" in readme
    assert "so\npip takes the CPU build" not in readme  # the pin alone does not select a build

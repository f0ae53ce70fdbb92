"""Scale out: the same run on 2 CPU processes (Lightning, gloo) equals the 1-process run.

The multi-process runs go through a subprocess, as users start them: Lightning starts the second
rank by re-running the command line, so it cannot be started from inside pytest.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from culturalign.blackbox.loop import read_history
from culturalign.cli import run

# 9 candidates, 24 rows each (vsm13, one wording), 48 rows per forward -> micro-batches of 2:
# [0:2] [2:4] [4:6] [6:8] [8:9]. Rank 0 scores 3 of them (one partial), rank 1 scores 2 and pads
# its third slot with NaN, so the split, the padding and the gather are all exercised.
POPSIZE, ROWS_PER_FORWARD, ROWS_PER_CANDIDATE = 9, 48, 24
DE_ARGS = [
    "fit",
    "--optimizer",
    "DE",
    "--optimizer.popsize",
    str(POPSIZE),
    "--search.budget",
    str(2 * POPSIZE),
    "--answering.max_batch_rows",
    str(ROWS_PER_FORWARD),
    "--survey.heldout",
    "[]",
    "--run.resume",
    "false",
    "--model.dtype",
    "float32",
    "--run.seed",
    "3",
]
TWO_CPU = ["--launch.devices", "2", "--launch.accelerator", "cpu"]


def console_script() -> list[str]:
    """The installed `culturalign` next to this interpreter, else `python -m culturalign`."""
    script = Path(sys.executable).with_name("culturalign")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "culturalign"]


def env_one_thread() -> dict[str, str]:
    # Same thread count per process in both runs, so the only difference is the split over ranks.
    return {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}


def launch(cmd: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env_one_thread())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def prompt_of(run_dir: Path) -> torch.Tensor:
    return load_file(str(run_dir / "adapter_model.safetensors"))["prompt_embeddings"]


def test_de_on_two_processes_equals_one_process(tiny_model_dir, tmp_path):
    assert ROWS_PER_FORWARD // ROWS_PER_CANDIDATE == 2 and POPSIZE > 2 * 2  # several micro-batches per rank
    args = DE_ARGS + ["--model", str(tiny_model_dir), "--run.root", str(tmp_path)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = run(args + ["--run.name", "one"])
    finally:
        torch.set_num_threads(threads)

    proc = launch(console_script() + args + ["--run.name", "two"] + TWO_CPU)
    # Rank 0 alone prints the summary (one JSON line), and it is the last line of stdout.
    summaries = [ln for ln in proc.stdout.splitlines() if ln.startswith('{"run_dir"')]
    assert len(summaries) == 1 and json.loads(summaries[0])["evaluations"] == 2 * POPSIZE

    two_dir = tmp_path / "two"
    two = json.loads((two_dir / "meta.json").read_text())
    assert one["world_size"] == 1 and two["world_size"] == 2
    assert two["best_loss"] == one["best_loss"]  # bit-identical, not approximately equal
    assert torch.equal(prompt_of(two_dir), prompt_of(tmp_path / "one"))
    first = [{k: v for k, v in read_history(d)[0].items() if k != "seconds"} for d in (two_dir, tmp_path / "one")]
    assert first[0] == first[1]
    # Same checkpoint files; the resume point too.
    assert {p.name for p in two_dir.iterdir()} == {p.name for p in (tmp_path / "one").iterdir()}
    assert torch.equal(prompt_of(two_dir / "last"), prompt_of(tmp_path / "one" / "last"))


def test_sigterm_to_rank0_stops_every_rank_after_the_same_generation(tiny_model_dir, tmp_path):
    """Rank 0 decides to stop and tells the others; `python -m culturalign` relaunches itself too."""
    run_dir = tmp_path / "sig"
    cmd = (
        [sys.executable, "-m", "culturalign"]
        + DE_ARGS
        + TWO_CPU
        + ["--model", str(tiny_model_dir), "--run.root", str(tmp_path), "--run.name", "sig", "--search.budget", "100000"]
    )
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_one_thread())
    try:
        deadline = time.time() + 240
        while not (run_dir / "last").exists():  # one generation done: the stop handler is installed
            assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)  # rank 0 only (the launcher's process); rank 1 never sees it
        out, err = proc.communicate(timeout=120)  # waits for rank 1 too: it holds the same pipes
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err[-3000:]
    assert "Traceback" not in err, err[-3000:]  # rank 1 shares stderr: it left the loop cleanly too
    meta = json.loads((run_dir / "meta.json").read_text())
    assert meta["stop_reason"] == "interrupted" and meta["world_size"] == 2
    assert meta["evaluations"] % POPSIZE == 0 and 0 < meta["evaluations"] < 100000
    assert out.count("SIGTERM received") == 1


def test_multi_process_from_python_is_refused(tiny_model_dir, tmp_path, capsys):
    """Lightning would re-run pytest's command line as rank 1; the CLI says how to launch instead."""
    with pytest.raises(SystemExit) as exc:
        run(DE_ARGS + TWO_CPU + ["--model", str(tiny_model_dir), "--run.root", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "launch.devices=2" in err and "torchrun" in err
    assert not any(tmp_path.iterdir())  # refused before anything was written


GD_ARGS = [
    "fit",
    "--optimizer",
    "GD",
    "--data",
    "synthetic_vsm13",
    "--cv.folds",
    "2",
    "--optimizer.epochs",
    "1",
    "--survey.heldout",
    "[]",
    "--run.resume",
    "false",
    "--model.dtype",
    "float32",
]


def checkpoint_files(run_dir: Path) -> set[str]:
    # TensorBoard event files carry the host and pid in their names.
    return {str(p.relative_to(run_dir)) for p in run_dir.rglob("*") if p.is_file() and "tfevents" not in p.name}


def test_gd_on_two_processes_writes_the_same_checkpoint_format(tiny_model_dir, tmp_path):
    """Lightning Trainer DDP (gloo): the run completes and its folder reads like a 1-process run's."""
    from culturalign.checkpoint.format import load_prompt
    from culturalign.model.backbone import load_backbone

    args = GD_ARGS + ["--model", str(tiny_model_dir), "--run.root", str(tmp_path)]
    proc = launch(console_script() + args + ["--run.name", "two"] + TWO_CPU)
    assert sum(ln.startswith('{"run_dir"') for ln in proc.stdout.splitlines()) == 1  # rank 0 alone reports
    run(args + ["--run.name", "one"])

    one_dir, two_dir = tmp_path / "one", tmp_path / "two"
    assert checkpoint_files(two_dir) == checkpoint_files(one_dir)
    backbone = load_backbone(str(tiny_model_dir), dtype="float32", device="cpu")
    for sub in ("", "fold0", "fold1", "last"):
        p1, m1 = load_prompt(one_dir / sub, backbone)
        p2, m2 = load_prompt(two_dir / sub, backbone)
        assert p2.shape == p1.shape and p2.dtype == p1.dtype == torch.float32 and torch.isfinite(p2).all()
        assert set(m2) == set(m1)
        assert (two_dir / sub / "adapter_config.json").read_text() == (one_dir / sub / "adapter_config.json").read_text()
    assert json.loads((two_dir / "meta.json").read_text())["world_size"] == 2

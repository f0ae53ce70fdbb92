"""Fault injection: kills, signals and crashes at any instant lose no completed work.

A DE run on the tiny model is SIGKILLed in the middle of a checkpoint write and at a random
instant of a generation, stopped with SIGTERM and with SIGINT, and resumed each time; the finished
run must equal, bit for bit, one that was never interrupted. `save_last` is also crashed at every
one of its file operations in turn. The random kill delay is printed (and in every failure
message) so a failure can be replayed with RELIABILITY_SEED.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from reliability_helpers import last_step, meta_step, start_cli, wait_for

import culturalign.checkpoint.format as fmt
from culturalign.checkpoint.format import load_last, load_prompt, save_last
from culturalign.cli import run

SEED = int(os.environ.get("RELIABILITY_SEED", time.time_ns() % 100_000))


# -- save_last crashed at every file operation ---------------------------------------------------


class Crash(Exception):
    """Stands for the process dying at this instant: nothing after it runs."""


def _state(step: int) -> tuple[torch.Tensor, dict, dict]:
    prompt = torch.full((2, 4), float(step))
    state = {"optimizer": bytes([step]) * 100, "history": torch.arange(step * 6, dtype=torch.float64).view(step, 6)}
    return prompt, {"step": step, "backbone": {"model_id": "m"}}, state


def _same(found, step: int) -> bool:
    prompt, meta, state = found
    want_prompt, _, want_state = _state(step)
    return (
        meta["step"] == step
        and torch.equal(prompt, want_prompt)
        and state["optimizer"] == want_state["optimizer"]
        and torch.equal(state["history"], want_state["history"])
    )


def _crashing(monkeypatch, crash_at: int) -> list[str]:
    """Make the crash_at-th file operation of format.py die half-done; returns the operations seen."""
    seen: list[str] = []
    real_replace, real_rmtree, real_save_file, real_fsync = os.replace, shutil.rmtree, fmt.save_file, os.fsync

    def step(name: str) -> bool:
        seen.append(name)
        return len(seen) == crash_at

    def replace(src, dst):
        if step(f"replace {Path(src).name} -> {Path(dst).name}"):
            raise Crash
        real_replace(src, dst)

    def rmtree(path, ignore_errors=False, **kw):
        if step(f"rmtree {Path(path).name}"):
            files = sorted(p for p in Path(path).iterdir() if p.is_file()) if Path(path).is_dir() else []
            if files:
                files[0].unlink()  # died part-way through deleting the folder
            raise Crash
        real_rmtree(path, ignore_errors=ignore_errors, **kw)

    def save_file(tensors, filename, metadata=None):
        if step(f"save_file {Path(filename).name}"):
            real_save_file(tensors, filename, metadata=metadata)
            data = Path(filename).read_bytes()
            Path(filename).write_bytes(data[: len(data) // 2])  # died mid-write: a truncated file
            raise Crash
        real_save_file(tensors, filename, metadata=metadata)

    def fsync(fd):
        if step("fsync"):
            raise Crash
        real_fsync(fd)

    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(shutil, "rmtree", rmtree)
    monkeypatch.setattr(fmt, "save_file", save_file)
    monkeypatch.setattr(os, "fsync", fsync)
    return seen


def test_save_last_crashed_at_every_operation_leaves_a_complete_resume_point(tmp_path, monkeypatch):
    crash_at, survived = 1, 0
    while True:
        run_dir = tmp_path / f"crash{crash_at}"
        run_dir.mkdir()
        save_last(run_dir, *_state(1))
        save_last(run_dir, *_state(2))  # a last.old may be left from an earlier crash: start from a swapped pair
        with monkeypatch.context() as m:
            seen = _crashing(m, crash_at)
            try:
                save_last(run_dir, *_state(3))
                finished = True
            except Crash:
                finished = False
        found = load_last(run_dir)
        assert found is not None, f"crash at {seen[-1]!r} left no resume point"
        # Either the previous generation or the new one, complete: never a mix, never nothing.
        assert _same(found, 2) or _same(found, 3), f"crash at {seen[-1]!r}: resume point is neither step 2 nor 3"
        if finished:
            assert _same(found, 3)
            break
        # The next save after a restart cleans up and works.
        save_last(run_dir, *_state(4))
        assert _same(load_last(run_dir), 4), f"save after a crash at {seen[-1]!r} did not take"
        assert not list(run_dir.glob(".last.tmp*")), "stale temporary folders left behind"
        crash_at, survived = crash_at + 1, survived + 1
    # Every operation of a complete save was a crash point once.
    assert survived == len(seen) >= 15, f"{survived} crash points exercised, a save has {len(seen)}: {seen}"


# -- a real DE run: SIGKILL mid-write, SIGKILL mid-generation, SIGTERM, SIGINT, then resume ----


def _history(run_dir: Path) -> torch.Tensor:
    return load_last(run_dir)[2]["history"][:, :5]  # without the wall-clock column


def _kill(proc) -> str:
    proc.kill()
    out, _ = proc.communicate(timeout=60)
    return out.decode(errors="replace")


@pytest.mark.parametrize("budget", [48])
def test_killed_and_signalled_de_run_resumes_bit_identical(fit_cmd, tmp_path, capsys, budget):
    rng = random.Random(SEED)
    tag = f"(RELIABILITY_SEED={SEED})"
    ref_argv = fit_cmd(budget=budget, root=tmp_path / "ref")
    argv = fit_cmd(budget=budget, root=tmp_path / "faults")
    run_dir = tmp_path / "faults" / "rel"

    # 1. SIGKILL while `last/` is being rewritten (the temp folder of a later generation exists).
    proc = start_cli(argv)
    hit = wait_for(lambda: meta_step(run_dir) >= 1 and any(p.name.startswith(".last.tmp") for p in run_dir.iterdir()), proc)
    seen = meta_step(run_dir)
    out = _kill(proc)
    assert hit, f"run ended before a second checkpoint write {tag}:\n{out[-2000:]}"
    torn = [p.name for p in run_dir.glob(".last.tmp*")]  # non-empty: the kill landed inside save_last
    step = last_step(run_dir)
    assert step >= seen >= 1, f"completed generation {seen} lost after a kill mid-write: last is {step} {tag}"
    assert len(_history(run_dir)) == step

    # 2. SIGKILL at a random instant of a generation (a fraction of one generation's measured time).
    proc = start_cli(argv)
    assert wait_for(lambda: meta_step(run_dir) > step, proc), f"resumed run ended early {tag}"
    t0 = time.monotonic()
    assert wait_for(lambda: meta_step(run_dir) > step + 1, proc), f"resumed run ended early {tag}"
    delay = rng.uniform(0.0, 1.0) * (time.monotonic() - t0)
    time.sleep(delay)
    seen = meta_step(run_dir)
    out = _kill(proc)
    after = last_step(run_dir)
    assert after >= max(seen, step + 2), f"kill {delay:.3f}s into a generation lost work: saw {seen}, last is {after} {tag}"
    with capsys.disabled():
        print(
            f"\nSIGKILL during the write of step {step + 1} (half-written {torn or 'none: kill landed after the swap'}), "
            f"then {delay:.3f}s into step {step + 3} -> resume point {after} {tag}"
        )

    # 3-4. SIGTERM, then SIGINT (Ctrl-C), sent to this process once a generation has completed:
    # finish the generation in flight, save, exit 0 (SIGTERM) or 130 (SIGINT). Same code path as the
    # console script (`main()` only calls `run()`), without paying another interpreter start.
    saved = after
    for sig, code in ((signal.SIGTERM, 0), (signal.SIGINT, 130)):

        def send(start: int = saved, sig: int = sig) -> None:
            while meta_step(run_dir) <= start:
                time.sleep(0.002)
            # Only while the loop (and so its handler) is surely still running; else the assert below fails.
            if meta_step(run_dir) < budget // 4 - 1:
                os.kill(os.getpid(), sig)

        watcher = threading.Thread(target=send, daemon=True)
        watcher.start()
        with pytest.raises(SystemExit) as exc:
            run(argv)
        watcher.join(timeout=10)
        out = capsys.readouterr().out
        assert exc.value.code == code, f"{signal.Signals(sig).name}: exit code {exc.value.code}, expected {code} {tag}"
        assert f"{signal.Signals(sig).name} received" in out and f"resuming {run_dir}" in out
        assert load_prompt(run_dir)[1]["stop_reason"] == "interrupted"
        now = last_step(run_dir)
        assert saved < now < budget // 4, f"{signal.Signals(sig).name} run saved step {now} after {saved} {tag}"
        saved = now

    # 5. Resume to the end, and compare with a run that was never interrupted.
    run(argv)
    run(ref_argv)
    ref_dir = tmp_path / "ref" / "rel"
    assert len(_history(run_dir)) == budget // 4
    assert not list(run_dir.glob(".last.tmp*")), "a killed write's temporary folder was never cleaned up"
    assert torch.equal(_history(run_dir), _history(ref_dir)), f"resumed history differs from the uninterrupted run {tag}"
    resumed, ref = load_prompt(run_dir), load_prompt(ref_dir)
    assert torch.equal(resumed[0], ref[0]), f"best prompt differs from the uninterrupted run {tag}"
    assert resumed[1]["best_loss"] == ref[1]["best_loss"] and resumed[1]["evaluations"] == ref[1]["evaluations"] == budget
    # The optimizer state is the record of asks (digests) and tells (losses): equal tensors, equal optimizers.
    states = [load_last(d)[2] for d in (run_dir, ref_dir)]
    for key in ("asks_sha256", "losses"):
        assert torch.equal(states[0][key], states[1][key]), f"resumed optimizer record ({key}) differs {tag}"
    assert states[0]["losses"].shape == (budget // 4, 4)


# -- output folder problems: refused before any work, or mid-run without losing the last checkpoint --


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if the backbone gets loaded: the errors below must come before any slow work."""
    import culturalign.commands.common as common

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the output folder was checked")

    monkeypatch.setattr(common, "load_backbone", refuse)


def test_read_only_output_folder_is_refused_before_work(fit_cmd, tmp_path, capsys, monkeypatch, no_model_load):
    root = tmp_path / "ro"
    root.mkdir()
    root.chmod(0o555)
    if os.geteuid() == 0:  # root writes through permission bits: make the filesystem say read-only instead
        import errno
        import pathlib

        real = pathlib.Path.write_bytes

        def read_only(self, data):
            if str(self).startswith(str(root)):
                raise OSError(errno.EROFS, "Read-only file system", str(self))
            return real(self, data)

        monkeypatch.setattr(pathlib.Path, "write_bytes", read_only)
    from reliability_helpers import cli_error

    message = cli_error(fit_cmd(root=root), capsys)
    assert message.startswith(f"cannot write to {root / 'rel'}") and "pass --run.root with a writable folder" in message
    assert ("Read-only file system" in message) or ("Permission denied" in message)


def test_full_disk_is_refused_before_work(fit_cmd, tmp_path, capsys, monkeypatch, no_model_load):
    import shutil as sh

    from reliability_helpers import cli_error

    monkeypatch.setattr(sh, "disk_usage", lambda path: sh._ntuple_diskusage(10 << 30, 10 << 30, 3 << 20))
    message = cli_error(fit_cmd(), capsys)
    assert message == f"only 3 MiB free at {tmp_path / 'runs' / 'rel'}; free some space or pass --run.root elsewhere"


def test_disk_full_mid_run_stops_cleanly_and_resumes(fit_cmd, tmp_path, capsys, monkeypatch):
    """ENOSPC while writing generation 3's resume point: exit 2 with one line, generation 2 intact, resume works."""
    import errno

    from reliability_helpers import cli_error

    real = fmt.save_file
    calls = {"state": 0}

    def full_disk(tensors, filename, metadata=None):
        if Path(filename).name.startswith(".state.safetensors"):
            calls["state"] += 1
            if calls["state"] == 3:
                Path(filename).write_bytes(b"\0" * 10)  # a partial write before the error
                raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, filename, metadata=metadata)

    with monkeypatch.context() as m:
        m.setattr(fmt, "save_file", full_disk)
        message = cli_error(fit_cmd(budget=24), capsys)
    run_dir = tmp_path / "runs" / "rel"
    assert "No space left on device" in message and "rerun the same command to resume" in message
    assert last_step(run_dir) == 2 and len(_history(run_dir)) == 2
    assert not [p for p in run_dir.rglob(".*tmp*") if p.is_file()], "temporary files left behind"
    run(fit_cmd(budget=24))
    assert last_step(run_dir) == 6 and load_prompt(run_dir)[1]["stop_reason"] == "budget"


# -- gradient descent: SIGKILL in the middle of a fold, resume -----------------------------------

CDEVAL_FIXTURE = Path(__file__).parents[1] / "fixtures" / "cdeval_small.json"


def _gd_args(tiny_model_dir, mini_survey, root: Path) -> list[str]:
    return [
        "fit",
        "--optimizer",
        "GD",
        "--optimizer.epochs",
        "2",
        "--optimizer.batch_size",
        "8",
        "--model",
        str(tiny_model_dir),
        "--model.dtype",
        "float32",
        "--model.device",
        "cpu",
        "--data",
        "cdeval_ivr",
        "--data.path",
        str(CDEVAL_FIXTURE),
        "--cv.folds",
        "2",
        "--survey",
        str(mini_survey),
        "--survey.heldout",
        "[]",
        "--prompt.num_virtual_tokens",
        "2",
        "--run.root",
        str(root),
        "--run.name",
        "gd",
    ]


def test_gd_killed_mid_fold_resumes_without_losing_finished_work(tiny_model_dir, mini_survey, tmp_path, capsys):
    argv = _gd_args(tiny_model_dir, mini_survey, tmp_path)
    run_dir = tmp_path / "gd"
    proc = start_cli(argv)
    # Fold 0 finished and fold 1 has completed an epoch: kill it in the middle of its next epoch.
    hit = wait_for(lambda: (run_dir / "fold0" / "result.json").is_file() and (run_dir / "fold1" / "last.ckpt").is_file(), proc, poll=0.01)
    out = _kill(proc)
    assert hit, f"GD run ended before fold 1 checkpointed:\n{out[-3000:]}"
    fold0 = (run_dir / "fold0" / "result.json").read_bytes()
    saved_step = int(torch.load(run_dir / "fold1" / "last.ckpt", weights_only=True, map_location="cpu")["global_step"])
    assert saved_step > 0

    summary = run(argv)
    printed = capsys.readouterr().out
    assert "fold 0: already finished, skipping" in printed and "fold 1: resuming from" in printed
    assert (run_dir / "fold0" / "result.json").read_bytes() == fold0, "a finished fold was redone"
    fold1 = [f for f in summary["folds"] if f["fold"] == 1][0]
    assert fold1["epochs_run"] == 2 and fold1["global_step"] >= saved_step
    assert len(summary["folds"]) == 2 and load_prompt(run_dir)[0].shape == (2, 32)


def test_gd_tampered_lightning_checkpoint_is_refused_with_one_line(tiny_model_dir, mini_survey, tmp_path, capsys):
    """A last.ckpt that would run os.system when unpickled: refused (weights_only), one line, nothing runs."""
    import pickle

    from reliability_helpers import cli_error

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    argv = _gd_args(tiny_model_dir, mini_survey, tmp_path)
    fold_dir = tmp_path / "gd" / "fold0"
    fold_dir.mkdir(parents=True)
    (fold_dir / "last.ckpt").write_bytes(pickle.dumps(Exploit()))
    message = cli_error(argv, capsys)
    assert "last.ckpt" in message and "--run.resume false" in message
    assert not marker.exists()

"""Processes and devices of a fit: Lightning Fabric for black-box runs, the Trainer's own for GD."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from culturalign.errors import CulturalignError
from culturalign.fit.run import RunArgs, prepare_run_dir

if TYPE_CHECKING:
    from lightning.fabric import Fabric


@dataclass
class LaunchArgs:
    """Processes and devices (Lightning Fabric for black-box runs, Trainer for GD)."""

    accelerator: str = "auto"
    """cpu, gpu, auto."""
    devices: int = 1
    """Processes per node; > 1 splits each population (black-box) or each batch (GD) across them."""
    strategy: str = "auto"
    """auto or ddp (black-box runs never wrap the frozen LM in DDP); fsdp for GD on models larger than one GPU."""
    num_nodes: int = 1
    """Nodes (SLURM or torchrun sets the rank variables)."""


def make_fabric(launch: LaunchArgs, run_dir: Path | None, from_command_line: bool) -> Fabric:
    """A Fabric, launched when there is more than one process (the frozen LM is never wrapped in DDP).

    Processes come from Lightning: its own launcher re-runs this command line once per extra
    local rank (`culturalign ...` or `python -m culturalign ...`), or torchrun / SLURM `srun`
    start them and Lightning reads their rank variables. Only rank 0 writes (loggers are rank-0-only).
    `from_command_line` is False when the command was called from Python with an argv that is not
    this process's command line (tests, notebooks): re-running sys.argv would then start copies of
    the caller (e.g. pytest), not `culturalign fit`.
    """
    if launch.devices < 1 or launch.num_nodes < 1:
        raise CulturalignError(f"launch.devices={launch.devices}, launch.num_nodes={launch.num_nodes} must be >= 1")
    from lightning.fabric import Fabric
    from lightning.fabric.loggers import CSVLogger, TensorBoardLogger
    from lightning.fabric.strategies.launchers.subprocess_script import _SubprocessScriptLauncher

    # One metrics log per run, readable by TensorBoard and as CSV (logs/metrics.csv, logs/tb/).
    loggers = (
        [
            CSVLogger(str(run_dir), name="logs", version="", flush_logs_every_n_steps=1),
            TensorBoardLogger(str(run_dir), name="logs", version="tb"),
        ]
        if run_dir is not None
        else []
    )
    strategy = launch.strategy
    if strategy == "auto" and launch.devices * launch.num_nodes > 1:
        strategy = "ddp"
    fabric = Fabric(accelerator=launch.accelerator, devices=launch.devices, strategy=strategy, num_nodes=launch.num_nodes, loggers=loggers)
    if fabric.world_size > 1 or launch.num_nodes > 1:
        launcher = getattr(fabric.strategy, "launcher", None)
        spawns = isinstance(launcher, _SubprocessScriptLauncher) and not launcher.cluster_environment.creates_processes_externally
        if spawns and not from_command_line:
            raise CulturalignError(
                f"launch.devices={launch.devices} starts the other ranks by re-running this process's command line "
                f"({' '.join(sys.argv[:2])} ...), which is not `culturalign fit`; run it from a shell "
                "(`culturalign fit ... --launch.devices N`) or under torchrun/srun"
            )
        fabric.launch()
    return fabric


def rank_zero_run_dir(fabric: Fabric, run: RunArgs, default_name: str) -> Path:
    """Rank 0 creates (or, with --run.resume false, empties) the run folder; other ranks only learn its path."""
    if fabric.world_size == 1:
        return prepare_run_dir(run, default_name)
    outcome: tuple[str, str] = ("", "")
    if fabric.global_rank == 0:
        try:
            outcome = ("ok", str(prepare_run_dir(run, default_name)))
        except CulturalignError as err:
            outcome = ("error", str(err))
    outcome = fabric.broadcast(outcome, src=0)
    if outcome[0] == "error":
        raise CulturalignError(outcome[1])
    return Path(outcome[1])

"""What every fit path shares: the run folder, resume policy, the context handed to a loop."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from culturalign.checkpoint.format import LAST, sanitise_run_name
from culturalign.errors import CulturalignError
from culturalign.model.backbone import Backbone
from culturalign.survey.definition import BUILTIN, Survey, load_survey
from culturalign.survey.fitness import SurveyFitness

if TYPE_CHECKING:
    from lightning.fabric import Fabric

MIN_FREE_BYTES = 64 << 20
# Written into every run folder, so that --run.resume false can tell a run from a folder of other files.
RUN_MARKER = ".culturalign-run"


@dataclass
class RunArgs:
    """Where a run is written and whether it continues an earlier one."""

    name: str | None = None
    """Folder name under `root` (default: <optimizer>-<target>, e.g. de-sau)."""
    root: str = "checkpoints"
    """Output root; each run is one folder inside it."""
    seed: int = 0
    """Seeds the init prompt, the optimizer and the data folds."""
    resume: bool | Literal["auto"] = "auto"
    """auto: continue from <run>/last if it exists; true: require it; false: start over (earlier files are replaced)."""


@dataclass
class FitContext:
    """Everything a fit loop needs; built once by `culturalign fit`."""

    backbone: Backbone
    fitness: SurveyFitness
    v0: torch.Tensor
    run_dir: Path
    meta: dict[str, Any]
    config_yaml: str
    seed: int
    resume: bool | Literal["auto"]
    heldout: dict[str, SurveyFitness] = field(default_factory=dict)
    validation: dict[str, SurveyFitness] = field(default_factory=dict)  # GD on the survey: picks the checkpoint
    fabric: Fabric | None = None  # black-box runs: processes, broadcast/all_gather and the run's loggers
    sample: int = 0  # readings drawn per GD step / black-box generation (culturalign.survey.readings); 0 = all
    started: float = field(default_factory=time.time)

    def reported_label(self, name: str) -> str:
        """How a report names a reported wording: validation wordings (--survey.validation) picked the
        checkpoint, so they are not called held out; a wording whose file declares a split is named by
        it (`development vsm13@5`: it chose the protocol; `test vsm13_blocks`); any other is held out."""
        if name.startswith("validation "):
            return name
        fit = self.heldout.get(name)
        split = fit.survey.wording_split if fit is not None else None
        return f"{split} {name}" if split in ("development", "test") else f"held-out {name}"


def prepare_run_dir(run: RunArgs, default_name: str) -> Path:
    """Create (or reuse) the run folder, refusing early if it cannot be written."""
    name = sanitise_run_name(run.name or default_name)
    root = Path(run.root).expanduser()
    run_dir = root / name
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_bytes(b"ok")
        probe.unlink()
    except OSError as err:
        raise CulturalignError(f"cannot write to {run_dir} ({err.strerror}); pass --run.root with a writable folder") from err
    free = shutil.disk_usage(run_dir).free
    if free < MIN_FREE_BYTES:
        raise CulturalignError(f"only {free >> 20} MiB free at {run_dir}; free some space or pass --run.root elsewhere")
    if run.resume is True and not ((run_dir / LAST).exists() or (run_dir / f"{LAST}.old").exists()):
        raise CulturalignError(f"--run.resume true but {run_dir} has no last/ checkpoint; use --run.resume auto to start fresh")
    if run.resume is False:
        _clear_run_dir(run_dir)
    (run_dir / RUN_MARKER).touch()
    return run_dir


def _clear_run_dir(run_dir: Path) -> None:
    """--run.resume false: empty the folder, but only if it is a culturalign run (never a symlink, never a
    folder of other files that happens to sit at the run path)."""
    if run_dir.is_symlink():
        raise CulturalignError(f"--run.resume false will not clear {run_dir}: it is a symbolic link; pass another --run.name or --run.root")
    children = list(run_dir.iterdir())
    if children and not any((run_dir / m).exists() for m in (RUN_MARKER, "meta.json", LAST)):
        raise CulturalignError(
            f"--run.resume false will not clear {run_dir}: it holds files but is not a culturalign run "
            f"(no {RUN_MARKER}, meta.json or {LAST}/); pass another --run.name or --run.root"
        )
    for child in children:
        # unlink, not rmtree, for links: what a link points to is never ours to delete.
        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def refuse_overlap(trained: dict[str, Survey], reported: dict[str, Survey]) -> None:
    """A wording trained on (directly or through data built from it) is never also held out or validation.

    Wordings are compared by their item sentences, not their names, so `vsm13@5` and a file holding
    the same sentences are one wording."""
    for name, survey in reported.items():
        texts = {it.text for it in survey.items}
        for source, other in trained.items():
            if shared := texts & {it.text for it in other.items}:
                raise CulturalignError(
                    f"{name} is reported as held out / validation but {len(shared)} of its items are "
                    f"trained on through {source}; drop it from --survey.heldout/--survey.validation "
                    "or train without that wording"
                )


def refuse_test_split(wordings: dict[str, Survey], role: str) -> None:
    """A wording whose file puts it in the test split is only ever reported: never trained on, never
    used to validate or select (docs/robustness.md). `role` says how the caller would use it. A file
    that copies sentences of a built-in test wording is refused too, whatever it declares."""
    test_texts = builtin_test_texts()
    for name, survey in wordings.items():
        copied = sorted({test_texts[it.text] for it in survey.items if it.text in test_texts})
        if survey.wording_split == "test" or copied:
            where = survey.origin if not copied else f"sentences of {', '.join(copied)}"
            raise CulturalignError(
                f"{name} ({where}) is in the test split and would be {role}; test wordings are only "
                "reported (--survey.heldout): train on train wordings and validate on development ones (docs/robustness.md)"
            )


def builtin_test_texts() -> dict[str, str]:
    """{item sentence: wording name} for every test wording shipped with the package."""
    out: dict[str, str] = {}
    for name in BUILTIN:
        base = load_survey(name)
        n = min((len(it.paraphrases) for it in base.items), default=0)
        for k, wording in enumerate([base, *(base.with_paraphrase(j) for j in range(n))]):
            if wording.wording_split == "test":
                out.update({it.text: name if k == 0 else f"{name}@{k}" for it in wording.items})
    return out


def result_summary(fitness: SurveyFitness, result: Any, i: int = 0) -> dict[str, Any]:
    """JSON-ready survey result for candidate i: dimensions, per-dimension error, loss."""
    dims = fitness.survey.dimensions
    values = {d: round(float(v), 3) for d, v in zip(dims, result.indices[i])}
    return {
        "dimensions": values,
        "error": {d: round(values[d] - fitness.target[d], 3) for d in dims if d in fitness.target},
        "loss": float(result.losses[i]),
        "wording_losses": [float(x) for x in result.wording_losses[i]],
        "invalid_answers": int(result.invalid[i]),
    }


def format_table(rows: dict[str, dict[str, Any]], dims: tuple[str, ...], target: dict[str, float], loss_kind: str) -> str:
    """A Markdown table: one row per prompt, then the target."""
    head = "| prompt | " + " | ".join(dims) + f" | {loss_kind.upper()} loss |"
    lines = [head, "|" + "---|" * (len(dims) + 2)]
    for label, r in rows.items():
        lines.append(f"| {label} | " + " | ".join(f"{r['dimensions'][d]:.1f}" for d in dims) + f" | {r['loss']:.2f} |")
    lines.append("| target | " + " | ".join(f"{target[d]:.0f}" if d in target else "-" for d in dims) + " | |")
    return "\n".join(lines)

"""The shared survey fitness as a Lightning callback: VSM13 dimensions and loss at each validation.

Any Trainer-based fit (GD on CDEval, on the synthetic set, or on the survey itself) logs the same
numbers the black-box loop optimises, from the same `SurveyFitness`, so GD and DE runs are
compared on one scale. Logged keys: `survey/<DIM>`, `survey/loss`, `survey/heldout/<wording>`, and
`survey/seconds` (wall time since the fit started, resumed runs included) for loss-against-time plots.
"""

from __future__ import annotations

import time
from typing import Any

import lightning as L
import torch

from culturalign.survey.fitness import SurveyFitness


class SurveyFitnessCallback(L.Callback):
    """Score the module's `eval_prompt` [T, d] (the moving average when GD runs with ema) with `fitness`
    (and each held-out wording) per validation."""

    def __init__(self, fitness: SurveyFitness, heldout: dict[str, SurveyFitness] | None = None) -> None:
        self.fitness, self.heldout = fitness, dict(heldout or {})
        self.before: dict[str, Any] | None = None
        self.history: list[dict[str, Any]] = []
        self._start = time.monotonic()
        self._offset = 0.0  # seconds already spent before a resume

    def score(self, prompt: torch.Tensor | None) -> dict[str, Any]:
        """{'loss', 'dimensions': {DIM: value}, 'heldout': {name: loss}} for one prompt (or None)."""
        p = None if prompt is None else prompt.detach()
        res = self.fitness(p)
        dims = self.fitness.survey.dimensions
        return {
            "loss": float(res.losses[0]),
            "dimensions": {d: round(float(v), 3) for d, v in zip(dims, res.indices[0])},
            "heldout": {name: float(f(p).losses[0]) for name, f in self.heldout.items()},
        }

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.before is None:
            self.before = self.score(pl_module.eval_prompt)
        self._start = time.monotonic()
        self._offset = float(self.history[-1].get("seconds", 0.0)) if self.history else 0.0

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        row = self.score(pl_module.eval_prompt)
        row["seconds"] = round(self._offset + time.monotonic() - self._start, 3)
        logs = {f"survey/{d}": v for d, v in row["dimensions"].items()}
        logs["survey/loss"] = row["loss"]
        logs["survey/seconds"] = row["seconds"]
        logs.update({f"survey/heldout/{k}": v for k, v in row["heldout"].items()})
        pl_module.log_dict(logs, on_epoch=True, batch_size=1)
        self.history.append({"epoch": trainer.current_epoch, "step": trainer.global_step, **row})

    def state_dict(self) -> dict[str, Any]:
        return {"before": self.before, "history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.before, self.history = state.get("before"), list(state.get("history", []))

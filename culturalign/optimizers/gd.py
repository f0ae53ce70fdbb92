"""Gradient descent on the soft prompt (Lightning Trainer, AdamW); see culturalign.fit.gradient."""

from __future__ import annotations

from typing import Any

from culturalign.errors import CulturalignError
from culturalign.optimizers.base import Optimizer


class GD(Optimizer):
    """AdamW on the soft prompt only; the LM stays frozen.

    Args:
        lr: Learning rate.
        epochs: Training epochs per fold.
        batch_size: Examples per step.
        weight_decay: AdamW weight decay on the prompt.
    """

    name = "GD"

    def __init__(self, lr: float = 0.01, epochs: int = 3, batch_size: int = 8, weight_decay: float = 0.0) -> None:
        if not lr > 0:
            raise CulturalignError(f"optimizer.lr={lr} must be > 0; try 0.01")
        if epochs < 1 or batch_size < 1:
            raise CulturalignError(f"optimizer.epochs={epochs} and optimizer.batch_size={batch_size} must be >= 1")
        self.lr, self.epochs, self.batch_size, self.weight_decay = lr, epochs, batch_size, weight_decay

    def run(self, ctx: Any, **groups: Any) -> dict[str, Any]:
        raise CulturalignError("GD training is not available in this build yet; use --optimizer DE")

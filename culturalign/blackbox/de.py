"""Differential Evolution (the paper's optimizer) through nevergrad."""

from __future__ import annotations

from typing import Any, Literal

from culturalign.blackbox.nevergrad_base import NevergradOptimizer
from culturalign.errors import CulturalignError


class DE(NevergradOptimizer):
    """Differential Evolution over the soft prompt (nevergrad `DifferentialEvolution`).

    Args:
        popsize: Population size; one generation = one batched survey of `popsize` prompts.
        F1: Differential weight on the (random - random) term (nevergrad: x + F1 (a - b) + F2 (best - x)).
        F2: Differential weight on the (best - current) term.
        crossover: Crossover: a rate CR in (0, 1], or one of twopoints, onepoint, dimension, random.
        initialization: How the first population is drawn: parametrization (Gaussian around the init prompt), LHS or QR.
    """

    name = "DE"

    def __init__(
        self,
        popsize: int = 16,
        F1: float = 0.8,
        F2: float = 0.8,
        crossover: float | Literal["twopoints", "onepoint", "dimension", "random"] = 0.5,
        initialization: Literal["parametrization", "LHS", "QR"] = "parametrization",
    ) -> None:
        super().__init__(popsize)
        if isinstance(crossover, float) and not 0 < crossover <= 1:
            raise CulturalignError(f"optimizer.crossover={crossover} must be in (0, 1] or a named crossover")
        if F1 <= 0 or F2 <= 0:
            raise CulturalignError(f"optimizer.F1={F1}, F2={F2} must be > 0; the usual range is 0.5-1.0")
        self.F1, self.F2, self.crossover, self.initialization = F1, F2, crossover, initialization

    def _build(self, parametrization: Any, budget: int) -> Any:
        import nevergrad as ng

        # popsize is passed explicitly: nevergrad otherwise uses max(30, num_workers).
        family = ng.families.DifferentialEvolution(
            crossover=self.crossover, F1=self.F1, F2=self.F2, popsize=self.popsize, initialization=self.initialization
        )
        return family(parametrization, budget=budget, num_workers=self.popsize)

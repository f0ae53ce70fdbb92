"""Random search: the baseline every black-box optimizer has to beat (nevergrad `RandomSearch`)."""

from __future__ import annotations

from typing import Any

from culturalign.blackbox.nevergrad_base import NevergradOptimizer


class RS(NevergradOptimizer):
    """Random search around the init prompt: every candidate is z ~ N(0, sigma^2 I), independent of the losses.

    Nothing is learnt from one generation to the next, so any optimizer that does not beat it at
    equal evaluations has learnt nothing (Clip-Tuning, 2022, found it a strong few-shot baseline).

    Args:
        popsize: Candidates per generation (one batched survey); it changes the batching, not the search.
    """

    name = "RS"

    def _build(self, parametrization: Any, budget: int) -> Any:
        import nevergrad as ng

        # sampler="gaussian" draws standardized N(0, I); the parametrization scales it by search.sigma.
        family = ng.families.RandomSearchMaker(sampler="gaussian")
        return family(parametrization, budget=budget, num_workers=self.popsize)

"""Shared adapter for nevergrad optimizers: one generation = popsize asks, then popsize tells.

nevergrad draws every random number from the parametrization's own seeded generator, so a fresh
instance fed the same losses asks the same candidates: that is what resume relies on (it replays
the run's record, `culturalign.blackbox.replay`), and why no optimizer object is ever saved.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from culturalign.blackbox.protocol import BlackBoxOptimizer, SearchSetup


class NevergradOptimizer(BlackBoxOptimizer):
    """Subclasses only say which nevergrad optimizer to build (`_build`)."""

    def _build(self, parametrization: Any, budget: int) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def setup(self, setup: SearchSetup) -> None:
        self._setup = setup
        self._opt = self._start(np.zeros(setup.dim), setup.sigma, np.random.RandomState(setup.seed), setup.budget)

    def _start(self, centre: np.ndarray, sigma: float, random_state: np.random.RandomState, budget: int) -> Any:
        """A fresh nevergrad optimizer sampling around `centre` with spread `sigma`, drawing only from `random_state`."""
        import nevergrad as ng

        param = ng.p.Array(init=centre).set_mutation(sigma=sigma)
        param.random_state = random_state
        opt = self._build(param, budget)
        # nevergrad keeps every evaluated point in its archive (210 MB at 40k dims after 320
        # evaluations): keep only the best few so long runs have bounded memory.
        from nevergrad.optimization.utils import Pruning

        opt.pruning = Pruning(min_len=self.popsize, max_len=4 * self.popsize)
        self._pending: list[Any] = []
        return opt

    def ask(self) -> np.ndarray:
        self._pending = [self._opt.ask() for _ in range(self.popsize)]
        return np.stack([c.value for c in self._pending])

    def tell(self, candidates: np.ndarray, losses: np.ndarray) -> None:
        for cand, loss in zip(self._pending, losses):
            self._opt.tell(cand, float(loss))
        self._pending = []

    def recommend(self) -> np.ndarray:
        return np.asarray(self._opt.provide_recommendation().value)

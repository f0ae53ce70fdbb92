"""CMA-ES over the soft prompt (the `cma` package): a culturalign optimizer plugin.

    pip install -e plugins/cmaes
    culturalign fit --optimizer CMAES --optimizer.popsize 16 --search.space subspace

Two choices make `--run.resume` (a replay of the run's asks and tells) bit-identical:
- cma draws every random number from numpy's *global* generator. This module owns a generator
  state and swaps it in around each cma call (and out again, so nothing else in the process is
  disturbed).
- Step size adapts by CSA. cma's default above 300 dimensions (TPA) also draws from the global
  generator outside these calls' control.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import numpy as np

from culturalign.errors import CulturalignError
from culturalign.optimizers.base import BlackBoxOptimizer, SearchSetup

# Full covariance costs dim^2 memory and an O(dim^3) eigendecomposition; above this, go diagonal.
DIAGONAL_ABOVE = 1000


class CMAES(BlackBoxOptimizer):
    """Covariance Matrix Adaptation Evolution Strategy (`cma.CMAEvolutionStrategy`, CSA step size).

    Args:
        popsize: Population size (lambda); one generation = one batched survey of `popsize` prompts.
        diagonal: Diagonal covariance (separable CMA, linear memory and time in the dimension); None: diagonal above 1000 dimensions (e.g. the full T x d space), full covariance below.
        active: Active CMA (also learns from the worst candidates); cma's default.
    """

    name = "CMAES"

    def __init__(self, popsize: int = 16, diagonal: bool | None = None, active: bool = True) -> None:
        super().__init__(popsize)
        self.diagonal = diagonal
        self.active = active

    @contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Run a cma call on this optimizer's random state instead of the process's."""
        outer = np.random.get_state()
        np.random.set_state(self._rng_state)
        try:
            yield
        finally:
            self._rng_state = np.random.get_state()
            np.random.set_state(outer)

    def setup(self, setup: SearchSetup) -> None:
        import cma

        diagonal = setup.dim > DIAGONAL_ABOVE if self.diagonal is None else self.diagonal
        if not diagonal and setup.dim > 20 * DIAGONAL_ABOVE:
            raise CulturalignError(
                f"optimizer.diagonal=false at {setup.dim} dimensions needs a {setup.dim}^2 covariance matrix; "
                "pass --optimizer.diagonal true or --search.space subspace"
            )
        opts = {
            "popsize": self.popsize,
            "seed": float("nan"),  # cma must not reseed the global generator: _own_rng holds the state
            "AdaptSigma": cma.sigma_adaptation.CMAAdaptSigmaCSA,
            "CMA_diagonal": bool(diagonal),
            "CMA_active": self.active,
            "verbose": -9,
            "verb_log": 0,  # no outcmaes/ files in the working directory
            "verb_disp": 0,
        }
        self._rng_state = np.random.RandomState(setup.seed).get_state()
        with self._own_rng():
            self._es = cma.CMAEvolutionStrategy(np.zeros(setup.dim), setup.sigma, opts)
        self._pending: list[np.ndarray] = []

    def ask(self) -> np.ndarray:
        with self._own_rng():
            self._pending = self._es.ask()
        return np.stack(self._pending)

    def tell(self, candidates: np.ndarray, losses: np.ndarray) -> None:
        # cma matches told solutions against the objects it handed out, so give those back.
        with self._own_rng():
            self._es.tell(self._pending, [float(x) for x in losses])
        self._pending = []

    def recommend(self) -> np.ndarray:
        best = self._es.best.x
        return np.asarray(self._es.mean if best is None else best)

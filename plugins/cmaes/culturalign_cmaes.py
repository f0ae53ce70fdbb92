"""CMA-ES over the soft prompt (nevergrad's `ParametrizedCMA`, which seeds and drives `cma`): a plugin.

    pip install -e plugins/cmaes
    culturalign fit --optimizer CMAES --optimizer.popsize 16 --search.space subspace

nevergrad hands cma its own seeded generator, so the shared adapter's seeding and replayed resume
apply as they are. Step size adapts by CSA, as before the move to nevergrad (so runs ask the same
candidates as then): cma's default above 300 dimensions (TPA) draws from numpy's global generator
for a consistency check (cma 4.5.0), disturbing every other user of it.
"""

from __future__ import annotations

from typing import Any

from culturalign.blackbox.nevergrad_base import NevergradOptimizer
from culturalign.errors import CulturalignError

# Full covariance costs dim^2 memory and an O(dim^3) eigendecomposition; above this, go diagonal.
DIAGONAL_ABOVE = 1000


class CMAES(NevergradOptimizer):
    """Covariance Matrix Adaptation Evolution Strategy (nevergrad `ParametrizedCMA` over `cma`, CSA step size).

    Args:
        popsize: Population size (lambda); one generation = one batched survey of `popsize` prompts.
        diagonal: Diagonal covariance (separable CMA, linear memory and time in the dimension); None: diagonal above
            1000 dimensions (e.g. the full T x d space), full covariance below.
        active: Active CMA (also learns from the worst candidates); cma's default.
    """

    name = "CMAES"

    def __init__(self, popsize: int = 16, diagonal: bool | None = None, active: bool = True) -> None:
        super().__init__(popsize)
        self.diagonal = diagonal
        self.active = active

    def _build(self, parametrization: Any, budget: int) -> Any:
        import cma
        import nevergrad as ng

        dim = parametrization.dimension
        diagonal = dim > DIAGONAL_ABOVE if self.diagonal is None else self.diagonal
        if not diagonal and dim > 20 * DIAGONAL_ABOVE:
            raise CulturalignError(
                f"optimizer.diagonal=false at {dim} dimensions needs a {dim}^2 covariance matrix; "
                "pass --optimizer.diagonal true or --search.space subspace"
            )
        inopts = {"AdaptSigma": cma.sigma_adaptation.CMAAdaptSigmaCSA, "CMA_active": self.active}
        # scale 1 in nevergrad's standardized space = search.sigma in z, as the other optimizers start.
        family = ng.families.ParametrizedCMA(popsize=self.popsize, diagonal=diagonal, inopts=inopts)
        return family(parametrization, budget=budget, num_workers=self.popsize)

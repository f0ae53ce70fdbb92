"""Particle Swarm Optimization over the soft prompt (nevergrad `ConfPSO`): a culturalign optimizer plugin.

    pip install -e plugins/pso
    culturalign fit --optimizer PSO --optimizer.popsize 16

The shared nevergrad adapter does ask/tell, seeding and archive pruning (resume replays the run);
this module only says which nevergrad optimizer to build.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from culturalign.blackbox.nevergrad_base import NevergradOptimizer
from culturalign.errors import CulturalignError


class PSO(NevergradOptimizer):
    """Particle Swarm Optimization (nevergrad `ConfPSO`, SPSO-2011 coefficients by default).

    Args:
        popsize: Number of particles; one generation = one batched survey of `popsize` prompts.
        omega: Inertia: how much of its previous velocity a particle keeps.
        phip: Pull towards the particle's own best position.
        phig: Pull towards the swarm's best position.
        transform: Space the particles move in: identity (unbounded, steps in search.sigma units), arctan or gaussian (squashed into a box).
    """

    name = "PSO"

    def __init__(
        self,
        popsize: int = 16,
        omega: float = 0.5 / math.log(2.0),
        phip: float = 0.5 + math.log(2.0),
        phig: float = 0.5 + math.log(2.0),
        transform: Literal["identity", "arctan", "gaussian"] = "identity",
    ) -> None:
        super().__init__(popsize)
        if not 0 <= omega < 1:
            raise CulturalignError(f"optimizer.omega={omega} must be in [0, 1) or the swarm never settles; try 0.72")
        if phip < 0 or phig < 0:
            raise CulturalignError(f"optimizer.phip={phip}, phig={phig} must be >= 0; try 1.19")
        self.omega, self.phip, self.phig, self.transform = omega, phip, phig, transform

    def _build(self, parametrization: Any, budget: int) -> Any:
        import nevergrad as ng

        # popsize is passed explicitly: nevergrad otherwise uses max(40, num_workers).
        family = ng.families.ConfPSO(transform=self.transform, popsize=self.popsize, omega=self.omega, phip=self.phip, phig=self.phig)
        return family(parametrization, budget=budget, num_workers=self.popsize)

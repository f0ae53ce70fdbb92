"""Where black-box search moves: the full soft prompt, or a random low-dimensional subspace.

    V(z) = V0 + reshape(z @ A)      subspace (Black-Box Tuning, Sun et al. 2022), A fixed, seeded
    V(z) = V0 + s * reshape(z)      full space

z starts at 0, i.e. at the init prompt V0 (random, vocab or a text instruction). Both maps are
scaled so that one unit of z moves each prompt element by about one embedding-matrix standard
deviation; `sigma` (the optimizer's initial spread) is therefore in those units too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from culturalign.errors import CulturalignError


@dataclass
class Search:
    """Black-box search space and stopping rules."""

    space: Literal["subspace", "full"] = "subspace"
    """subspace: V = V0 + A z with a seeded random A (fewer dimensions, faster search); full: every prompt element."""
    dim: int = 64
    """Subspace dimension k (ignored for `full`)."""
    sigma: float = 0.5
    """Initial spread of the population per coordinate, in embedding-std units (0.5 moves a token by ~half an embedding norm)."""
    budget: int = 192
    """Total candidate evaluations (generations = budget / popsize)."""
    max_time: float | None = None
    """Stop after this many seconds (checked between generations)."""
    target_loss: float | None = None
    """Stop once the best loss is at or below this."""

    def __post_init__(self) -> None:
        if self.budget < 1:
            raise CulturalignError(f"search.budget={self.budget} must be >= 1 evaluation; try 192")
        if self.space == "subspace" and self.dim < 1:
            raise CulturalignError(f"search.dim={self.dim} must be >= 1; try 64")
        if not self.sigma > 0:
            raise CulturalignError(f"search.sigma={self.sigma} must be > 0; try 0.5")


class Projection:
    """Maps search vectors z (N, k) to soft prompts (N, T, d) around V0."""

    def __init__(self, search: Search, v0: torch.Tensor, embedding_std: float, seed: int) -> None:
        self.v0 = v0.float()
        self.kind = search.space
        T, d = v0.shape
        if self.kind == "full":
            self.dim = T * d
            self.A = None
            self.scale = embedding_std
        elif self.kind == "subspace":
            self.dim = search.dim
            gen = torch.Generator().manual_seed(seed + 7919)  # decoupled from the optimizer's own seed
            # std so that z ~ N(0, 1) gives elements with std `embedding_std`.
            self.A = torch.randn(search.dim, T * d, generator=gen) * (embedding_std / np.sqrt(search.dim))
        else:
            raise CulturalignError(f"search.space={self.kind!r} is unknown; use subspace or full")

    def to_prompts(self, z: np.ndarray | torch.Tensor) -> torch.Tensor:
        z = torch.as_tensor(np.asarray(z), dtype=torch.float32)
        if z.dim() == 1:
            z = z.unsqueeze(0)
        delta = z @ self.A if self.A is not None else z * self.scale
        return self.v0.unsqueeze(0) + delta.view(z.shape[0], *self.v0.shape)

"""The optimizer protocol and its registry.

Every optimizer, built-in or plugin, is a subclass of `Optimizer` registered under the entry-point
group `culturalign.optimizers` (the package registers its own DE and GD there too). Black-box
optimizers implement setup / ask / tell / recommend over a flat search vector and are
deterministic given the seed; the shared loop in `culturalign.fit.blackbox` does everything else
(fitness, checkpoints, resume by replaying the recorded asks and tells, distribution), so a new
optimizer is one small module with no state code.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import ClassVar

import numpy as np

from culturalign.errors import CulturalignError

GROUP = "culturalign.optimizers"


class Optimizer(ABC):
    """Base of every optimizer; `--optimizer NAME` picks a registered subclass."""

    name: ClassVar[str] = ""

    def config(self) -> dict:
        """Hyper-parameters recorded in meta.json (the constructor's arguments)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}


@dataclass
class SearchSetup:
    """What the loop tells a black-box optimizer before the first ask."""

    dim: int
    budget: int  # total candidate evaluations
    sigma: float  # initial spread, in search-space units (the start point is the origin)
    seed: int


class BlackBoxOptimizer(Optimizer):
    """Minimise f(z), z in R^dim, starting around z = 0 (the init prompt).

    Given the same setup (seed included) and the same losses, ask() must return the same candidates,
    bit for bit, and use no random state but its own: resume replays the run's asks and tells into a
    fresh instance (`culturalign.optimizers.replay`) and refuses if an ask differs.
    """

    def __init__(self, popsize: int = 16) -> None:
        if popsize < 2:
            raise CulturalignError(f"optimizer.popsize={popsize} must be >= 2 (a population of 1 cannot recombine); try 16")
        self.popsize = popsize

    @abstractmethod
    def setup(self, setup: SearchSetup) -> None:
        """Create the underlying optimizer (seeded)."""

    @abstractmethod
    def ask(self) -> np.ndarray:
        """A generation of candidates, shape (popsize, dim)."""

    @abstractmethod
    def tell(self, candidates: np.ndarray, losses: np.ndarray) -> None:
        """Report the losses of the candidates returned by the last ask."""

    @abstractmethod
    def recommend(self) -> np.ndarray:
        """The optimizer's current best guess, shape (dim,)."""


def _dist_name(ep) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist is not None else "unknown distribution"


def discover() -> dict[str, type[Optimizer]]:
    """Load every registered optimizer; two with one name is an error naming both distributions."""
    found: dict[str, type[Optimizer]] = {}
    origin: dict[str, str] = {}
    for ep in entry_points(group=GROUP):
        if ep.name in found:
            if origin[ep.name] == _dist_name(ep):  # the same install seen twice on sys.path
                continue
            raise CulturalignError(
                f"two optimizers are named {ep.name!r}: one from {origin[ep.name]}, one from {_dist_name(ep)}; "
                "uninstall one of them"
            )
        try:
            cls = ep.load()
        except Exception as err:  # noqa: BLE001 - a broken plugin must not hide the others' names
            raise CulturalignError(f"optimizer plugin {ep.name!r} ({ep.value}) failed to import: {err}") from err
        if not (isinstance(cls, type) and issubclass(cls, Optimizer)):
            raise CulturalignError(f"entry point {ep.name!r} = {ep.value} is not a culturalign Optimizer subclass")
        found[ep.name] = cls
        origin[ep.name] = _dist_name(ep)
    return found


def get(name: str) -> type[Optimizer]:
    registry = discover()
    if name not in registry:
        raise CulturalignError(f"optimizer {name!r} is not installed; installed: {', '.join(sorted(registry))}")
    return registry[name]

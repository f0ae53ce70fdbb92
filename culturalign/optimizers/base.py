"""The optimizer protocol and its registry.

Every optimizer, built-in or plugin, is a subclass of `Optimizer` registered under the entry-point
group `culturalign.optimizers` (the package registers its own DE, RS and GD there too). Its one
entry point is `fit(ctx, launch, **groups)`: the command builds the shared `FitContext` (backbone,
fitness, init prompt, run folder) and hands it over; the method does the rest. Options that only
one method understands are keyword parameters of its `fit` (typed dataclasses), so the CLI shows
them under `fit --optimizer NAME` and nowhere else. Black-box optimizers share one loop
(`culturalign.blackbox`); gradient descent is `culturalign.gradient`.
"""

from __future__ import annotations

import inspect
from abc import ABC, abstractmethod
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any, ClassVar

from culturalign.errors import CulturalignError

if TYPE_CHECKING:
    from culturalign.fit.launch import LaunchArgs
    from culturalign.fit.run import FitContext

GROUP = "culturalign.optimizers"
# Parameters of `fit` that every method receives from the command, not from its own option groups.
SHARED_PARAMETERS = ("self", "ctx", "launch")


class Optimizer(ABC):
    """Base of every optimizer; `--optimizer NAME` picks a registered subclass."""

    name: ClassVar[str] = ""
    # Whether `--survey.validation` wordings mean anything to this method (they pick a checkpoint).
    uses_validation_wordings: ClassVar[bool] = False

    def config(self) -> dict[str, Any]:
        """Hyper-parameters recorded in meta.json (the constructor's arguments)."""
        return {k: v for k, v in vars(self).items() if not k.startswith("_")}

    @abstractmethod
    def fit(self, ctx: FitContext, launch: LaunchArgs, **groups: Any) -> dict[str, Any]:
        """Run (or resume) a fit into ctx.run_dir and return the summary written to its meta.json.

        Subclasses replace `**groups` by their own typed option groups, e.g.
        `fit(self, ctx, launch, search: Search = Search())`; `option_groups()` reads them back.
        """

    @classmethod
    def option_groups(cls) -> dict[str, type]:
        """Method-only option groups: name -> dataclass, from the keyword parameters of `fit`."""
        params = inspect.signature(cls.fit).parameters
        names = [n for n, p in params.items() if n not in SHARED_PARAMETERS and p.kind is not inspect.Parameter.VAR_KEYWORD]
        # Annotations are strings (postponed evaluation): look each group's class name up in the module that
        # defines fit, so names imported there for type checking only are never needed here.
        return {
            n: cls.fit.__globals__[params[n].annotation] if isinstance(params[n].annotation, str) else params[n].annotation for n in names
        }


def _dist_name(ep: EntryPoint) -> str:
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
                f"two optimizers are named {ep.name!r}: one from {origin[ep.name]}, one from {_dist_name(ep)}; uninstall one of them"
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
        raise CulturalignError(f"--optimizer {name} is not installed; installed: {', '.join(sorted(registry))}")
    return registry[name]

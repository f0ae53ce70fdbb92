"""The prompts an evaluation compares: trained run directories plus built-in baselines.

Baselines (paper Table 1(b) rows): `none` (no soft prompt), `instruction` (a hard-prompt persona
"You are a person from <country>." in the system turn, one per target), and an untrained soft
prompt per init mode (`random`, `vocab`, `text`): what a run starts from before any optimisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from culturalign.checkpoint.format import load_prompt
from culturalign.errors import CulturalignError
from culturalign.model.backbone import Backbone
from culturalign.model.soft_prompt import INIT_MODES, init_prompt
from culturalign.targets import Target, persona, resolve_target

BASELINES = ("none", "instruction", *INIT_MODES)


@dataclass
class Candidate:
    """One prompt under evaluation. `prompt` is fp32 (T, d) or None; `instruction` a system turn or None."""

    label: str
    kind: str  # "baseline" or "run"
    prompt: torch.Tensor | None = None
    instruction: str | None = None
    run_dir: str | None = None
    info: dict[str, Any] = field(default_factory=dict)


def baselines(
    backbone: Backbone, names: Sequence[str], targets: Sequence[Target], num_virtual_tokens: int, seed: int = 0
) -> list[Candidate]:
    """Built-in baselines in the order asked; `instruction` gives one candidate per named target."""
    unknown = [n for n in names if n not in BASELINES]
    if unknown:
        raise CulturalignError(f"unknown baseline(s) {unknown}; choose from {', '.join(BASELINES)}")
    # Custom targets name no country; the paper's Saudi Arabia stands in when nothing else is named.
    countries = [t for t in targets if t.iso3] or [resolve_target("SAU")]
    out: list[Candidate] = []
    for name in names:
        if name == "none":
            out.append(Candidate("no prompt", "baseline", info={"baseline": "none"}))
        elif name == "instruction":
            for country in countries:
                label = "instruction" if len(countries) == 1 else f"instruction ({country.name})"
                text = persona(country)
                out.append(Candidate(label, "baseline", instruction=text, info={"baseline": "instruction", "text": text}))
        else:
            text = persona(countries[0]) if name == "text" else None
            v = init_prompt(backbone, num_virtual_tokens, name, text, seed)
            out.append(
                Candidate(
                    f"untrained soft ({name})",
                    "baseline",
                    prompt=v,
                    info={"baseline": f"untrained-{name}", "num_virtual_tokens": num_virtual_tokens, "init_text": text, "seed": seed},
                )
            )
    return out


def load_runs(run_dirs: Sequence[str], backbone: Backbone, force: bool = False) -> list[Candidate]:
    """Each run directory (any optimizer) as a candidate labelled `<OPTIMIZER> (<folder>)`."""
    out: list[Candidate] = []
    seen: set[str] = set()
    for d in run_dirs:
        prompt, meta = load_prompt(d, backbone, force)
        opt = (meta.get("optimizer") or {}).get("name", "?")
        label = f"{opt} ({Path(d).name})"
        if label in seen:  # two folders with the same name under different roots
            label = f"{opt} ({d})"
        seen.add(label)
        tgt = meta.get("target") or {}
        out.append(
            Candidate(
                label,
                "run",
                prompt=prompt,
                run_dir=str(d),
                info={
                    "optimizer": opt,
                    "trained_target": tgt.get("iso3") or tgt.get("name"),
                    "num_virtual_tokens": int(prompt.shape[0]),
                    "init": meta.get("init"),
                    "trained_survey": meta.get("survey"),
                    "trained_answering": meta.get("answering"),
                    "trained_loss_kind": meta.get("loss_kind"),
                    "trained_constants": meta.get("constants"),
                    "evaluations": meta.get("evaluations"),
                    "best_loss": meta.get("best_loss"),
                    "data": meta.get("data"),
                },
            )
        )
    return out

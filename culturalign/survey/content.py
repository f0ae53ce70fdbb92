"""Does the model answer by content? Two numbers a user should see before optimising anything.

- `position_mass`: the answer probability on the most common listed position, averaged over the
  items of the base wording asked in both label orders. A model that always picks the first
  option scores ~1 whatever the items say; a model that reads the labels cannot exceed ~0.5
  here, because reversing the list moves each label to the other end.
- Correlations of the per-item expected answers (the survey's numbering) between the base wording
  and another layout (default `vsm13_blocks`), and between the base wording read in the forward
  and in the reverse label order. Over all items they mostly measure which scale an item uses (the
  scales' labels differ), so they are also reported within the largest set of items sharing one
  scale (VSM13: items 1-14), where only item content can produce a correlation. The layout
  correlation is also given with both wordings read in the reverse order alone, as a replication.

One fitness call administers both wordings in both orders (batched), with the reading
(`Answering`) under test; the reported reading of a wording is what that `Answering` would use
(both orders averaged when `debias`, else the forward order).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import torch

from culturalign.model.backbone import Backbone
from culturalign.survey.definition import Survey
from culturalign.survey.fitness import Answering, SurveyFitness


def shared_scale_items(survey: Survey) -> list[int]:
    """0-based positions of the largest set of items that share one scale (first such scale on ties)."""
    scale, _ = Counter(it.scale for it in survey.items).most_common(1)[0]
    return [j for j, it in enumerate(survey.items) if it.scale == scale]


def pearson(a: torch.Tensor, b: torch.Tensor) -> float | None:
    """Pearson correlation; None when either side is constant (no correlation is defined)."""
    a, b = a.double() - a.double().mean(), b.double() - b.double().mean()
    den = float(a.norm() * b.norm())
    return None if den < 1e-12 else float((a * b).sum()) / den


def content_signal(
    backbone: Backbone,
    base: Survey,
    other: Survey,
    answering: Answering,
    prompt: torch.Tensor | None = None,
) -> dict[str, Any]:
    """The content-signal report of one reading of `base` against `other` (see the module docstring)."""
    fit = SurveyFitness(backbone, [base, other], {d: 50.0 for d in base.dimensions}, answering=replace(answering, debias=True))
    res = fit(None if prompt is None else prompt.unsqueeze(0) if prompt.dim() == 2 else prompt[:1])
    return content_report(res.distributions[0].detach().float().cpu(), base, answering.debias)


def content_report(dists: torch.Tensor, survey: Survey, debias: bool) -> dict[str, Any]:
    """From (4, I, K) distributions as asked (base fwd, base rev, other fwd, other rev) to the report."""
    K = dists.shape[-1]
    k = torch.arange(1, K + 1, dtype=dists.dtype)
    e = (dists * k).sum(-1)  # (4, I), as listed
    e[1::2] = K + 1 - e[1::2]  # reverse orders back into the survey's numbering
    read = (e[0::2] + e[1::2]) / 2 if debias else e[0::2]  # (2, I): base, other
    mean_by_position = dists[:2].mean(dim=(0, 1))  # base wording, both orders
    within = shared_scale_items(survey)

    def both(a: torch.Tensor, b: torch.Tensor) -> dict[str, float | None]:
        return {"all": _round(pearson(a, b)), "within_scale": _round(pearson(a[within], b[within]))}

    return {
        "position_mass": round(float(mean_by_position.max()), 4),
        "most_common_position": int(mean_by_position.argmax()) + 1,
        "within_scale_items": [survey.items[j].id for j in within],
        "within_scale_spread": round(float(read[0, within].std()), 4),
        "corr_other_wording": both(read[0], read[1]),
        # The same comparison with both wordings read in the reverse order only: a replication
        # that a layout-specific order artefact cannot pass in both orders at once.
        "corr_other_wording_reverse": both(e[1], e[3]),
        "corr_reverse_order": both(e[0], e[1]),
    }


def _round(x: float | None) -> float | None:
    return None if x is None else round(x, 3)

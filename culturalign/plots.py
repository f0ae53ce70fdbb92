"""Figures: convergence curves and model-vs-target dimension bars (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib

matplotlib.use("Agg")  # no display on servers and CI
import matplotlib.pyplot as plt  # noqa: E402


def dimension_bars(
    dimensions: Sequence[str],
    series: Mapping[str, Sequence[float]],
    target: Mapping[str, float] | None,
    path: str | Path,
    title: str = "",
) -> Path:
    """Grouped bars per dimension: each series (e.g. baseline, tuned) beside the target (paper Fig. 2 style)."""
    groups = dict(series)
    if target:
        groups = {"target": [target.get(d, float("nan")) for d in dimensions], **groups}
    rows = -(-len(groups) // 4)
    fig, ax = plt.subplots(figsize=(1.4 * len(dimensions) + 2, 3.6 + 0.25 * rows))
    width = 0.8 / max(1, len(groups))
    for i, (label, values) in enumerate(groups.items()):
        xs = [j + (i - (len(groups) - 1) / 2) * width for j in range(len(dimensions))]
        ax.bar(xs, list(values), width, label=label, color="black" if label == "target" else None, alpha=0.85 if label == "target" else 1.0)
    ax.set_xticks(range(len(dimensions)), list(dimensions))
    ax.set_ylabel("index")
    ax.set_title(title)
    # Legend below the axes: inside, it hides bars whatever corner it picks.
    ax.legend(fontsize=8, ncols=min(4, len(groups)), loc="upper center", bbox_to_anchor=(0.5, -0.1), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def convergence(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    xlabel: str = "evaluations",
    ylabel: str = "best loss",
    title: str = "",
    baselines: Mapping[str, float] | None = None,
) -> Path:
    """Best-so-far loss against evaluations for one or several runs."""
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for label, (xs, ys) in curves.items():
        ax.plot(list(xs), list(ys), marker=".", label=label)
    for label, y in (baselines or {}).items():
        ax.axhline(y, linestyle="--", linewidth=1, color="grey")
        ax.annotate(label, (0, y), textcoords="offset points", xytext=(4, 3), fontsize=8, color="grey")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)

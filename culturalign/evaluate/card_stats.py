"""The report card's arithmetic: intervals over seeds, the target's rank among countries, spreads,
and which runs are seeds of one setting. No model here: numbers in, numbers out.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml

from culturalign.targets import DIMENSIONS, Target, load_table

# Student t quantile at 0.975 for 1..30 degrees of freedom (standard tables, 4 decimals).
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip
_Z975 = 1.959963984540054
# Options of a run's config.yaml that do not change what is trained: where it is written, how it is
# launched, the memory budget, and every seed (seeds are what a setting is repeated over).
_NOT_SETTING = {("run",), ("launch",), ("force",), ("model", "device"), ("answering", "max_batch_rows")}


def t_quantile_975(df: int) -> float:
    """Two-sided 95% Student t quantile; beyond 30 degrees of freedom a Cornish-Fisher expansion
    (error < 1e-4 there), so no SciPy dependency."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z, v = _Z975, float(df)
    return (
        z + (z**3 + z) / (4 * v) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2) + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
    )


def interval(values: Sequence[float]) -> dict[str, Any]:
    """Mean and 95% t-interval over seeds: mean +- t(0.975, n-1) * sd / sqrt(n), sd with n-1.
    One value: n=1 and no interval (low/high None); non-finite values are left out and counted."""
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(vals)
    out: dict[str, Any] = {"n": n, "mean": None, "sd": None, "low": None, "high": None, "dropped": len(values) - n}
    if n == 0:
        return out
    mean = sum(vals) / n
    out["mean"] = mean
    if n == 1:
        return out
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    half = t_quantile_975(n - 1) * sd / math.sqrt(n)
    out.update(sd=sd, low=mean - half, high=mean + half)
    return out


def ranked_countries(target: Target, source: str) -> list[Target]:
    """The countries a target is ranked among: the table of `source` without regions (ISO codes
    starting with X), with every dimension the target has; the target itself is always one of them."""
    dims = [d for d in DIMENSIONS if d in target.scores]
    rows = [t for t in load_table(source) if not (t.iso3 or "X").startswith("X") and all(d in t.scores for d in dims)]
    if not any(t.iso3 and t.iso3 == target.iso3 for t in rows):
        rows.append(target)
    return rows


def rank_of_target(
    indices: Mapping[str, float], constants: Mapping[str, float], target: Target, countries: Sequence[Target]
) -> dict[str, Any]:
    """Where the target ranks (1 = nearest) among `countries` by L2 distance of the model's indices.

    `centred` (the headline, independent of the constants C): the model's index minus its C (its
    deviation from a respondent giving every answer equally) against each country's score minus the
    mean of that dimension over `countries`. `at_constants`: the indices as computed, with C, against
    the raw scores. Ties count in the target's favour (only strictly nearer countries rank above)."""
    dims = [d for d in DIMENSIONS if d in target.scores and d in indices]
    mean = {d: sum(c.scores[d] for c in countries) / len(countries) for d in dims}

    def rank(model: dict[str, float], centre: dict[str, float]) -> tuple[int, list[str]]:
        dist = [(math.dist([model[d] for d in dims], [c.scores[d] - centre[d] for d in dims]), c) for c in countries]
        mine = next(x for x, c in dist if c is target or (c.iso3 and c.iso3 == target.iso3))
        nearest = sorted(dist, key=lambda p: p[0])[:5]
        return 1 + sum(x < mine for x, _ in dist), [c.iso3 or c.name for _, c in nearest]

    centred, near_c = rank({d: indices[d] - constants[d] for d in dims}, mean)
    raw, near_r = rank({d: indices[d] for d in dims}, dict.fromkeys(dims, 0.0))
    return {"centred": centred, "at_constants": raw, "of": len(countries), "nearest_centred": near_c, "nearest_at_constants": near_r}


def spread(rows: Sequence[Mapping[str, float]]) -> dict[str, Any]:
    """Population standard deviation of each dimension over `rows` (as `culturalign survey --layouts`
    reports it), and its mean over dimensions. Fewer than two rows: no spread (None)."""
    if len(rows) < 2:
        return {"n": len(rows), "std": None, "mean": None}
    dims = [d for d in rows[0] if all(d in r for r in rows)]
    std = {}
    for d in dims:
        m = sum(r[d] for r in rows) / len(rows)
        std[d] = math.sqrt(sum((r[d] - m) ** 2 for r in rows) / len(rows))
    return {"n": len(rows), "std": std, "mean": sum(std.values()) / len(std)}


def _strip(node: Any, path: tuple[str, ...] = ()) -> Any:
    if isinstance(node, dict):
        return {k: _strip(v, (*path, k)) for k, v in node.items() if k != "seed" and (*path, k) not in _NOT_SETTING}
    if isinstance(node, list):
        return [_strip(v, path) for v in node]
    return node


def setting_key(run_dir: str | None) -> str | None:
    """A run's setting: its config.yaml (what `fit` resolved) without run.*, launch.*, force,
    model.device, answering.max_batch_rows and every `seed`. None when the run has no readable config."""
    path = Path(run_dir or "") / "config.yaml"
    if not run_dir or not path.is_file():
        return None
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        return None
    inner = cfg.get("fit", cfg) if isinstance(cfg, dict) else None
    return None if not isinstance(inner, dict) else json.dumps(_strip(inner), sort_keys=True, default=str)


def setting_label(names: Sequence[str]) -> str:
    """A setting named after its runs' folders, seed suffixes (`-s1`, `_seed2`, `-3`) dropped."""
    stems = sorted({re.sub(r"[-_.]?(s|seed)?\d+$", "", n) or n for n in names})
    return stems[0] if len(stems) == 1 else " / ".join(stems[:2]) + (" ..." if len(stems) > 2 else "")


def group_settings(prompts: Sequence[tuple[str, str, str | None]], explicit: Mapping[str, Sequence[str]]) -> list[dict[str, Any]]:
    """Prompts (label, kind, run_dir) into settings: runs named in `explicit` ({setting: [run dirs]})
    form those settings; other runs group by `setting_key` (no readable config: alone); every
    baseline is a setting of its own. In first-seen order."""
    from culturalign.errors import CulturalignError

    where: dict[str, str] = {}
    for name, dirs in explicit.items():
        for d in dirs:
            key = str(Path(d).expanduser().resolve())
            if key in where:
                raise CulturalignError(f"--card.settings names run {d!r} in both {where[key]!r} and {name!r}; list each run once")
            where[key] = name
    known = {str(Path(r).expanduser().resolve()) for _, _, r in prompts if r}
    if missing := [d for d in where if d not in known]:
        raise CulturalignError(
            f"--card.settings names {missing[0]!r}, which is not among the run directories evaluated; pass it as a run too"
        )
    groups: dict[str, dict[str, Any]] = {}
    for label, kind, run_dir in prompts:
        resolved = str(Path(run_dir).expanduser().resolve()) if run_dir else None
        if resolved in where:
            key, name = f"explicit:{where[resolved]}", where[resolved]
        else:
            cfg = setting_key(run_dir) if kind == "run" else None
            key, name = (f"config:{cfg}", None) if cfg else (f"prompt:{label}", label)
        g = groups.setdefault(key, {"label": name, "prompts": [], "folders": []})
        g["prompts"].append(label)
        g["folders"].append(Path(run_dir).name if run_dir else label)
    taken: set[str] = set()
    for g in groups.values():
        folders = g.pop("folders")
        base = g["label"] or setting_label(folders)
        label, k = base, 2
        while label in taken:  # two configs whose folders share a stem still get two names
            label, k = f"{base} ({k})", k + 1
        g["label"] = label
        taken.add(label)
    return list(groups.values())

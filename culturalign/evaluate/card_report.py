"""The report card as Markdown tables and one plot (per-split ratios with their 95% intervals).

Reads only `results["card"]` (written by culturalign.evaluate.card), so a finished evaluation can be
re-rendered without the model, like the rest of the report.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path
from typing import Any

SHORT = {"train": "train", "development": "dev", "test": "test", "both": "both", "forward": "fwd", "reverse": "rev"}


def _num(x: float | None, nd: int = 2) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _interval(s: dict[str, Any], nd: int = 2) -> str:
    if s["mean"] is None:
        return "n/a"
    if s["low"] is None:
        return f"{_num(s['mean'], nd)} (n={s['n']})"
    return f"{_num(s['mean'], nd)} [{_num(s['low'], nd)}, {_num(s['high'], nd)}]"


def _splits(card: dict[str, Any]) -> tuple[str, ...]:
    """train, then the card's other splits (a development card, `--card.read_test false`, has no test)."""
    return ("train", *card["splits"])


def _on(card: dict[str, Any]) -> str:
    """The split ranks, positions and format noise were read on (cards written before it existed: test)."""
    return card.get("read_on", "test")


def _split_text(card: dict[str, Any]) -> str:
    parts = {s: ", ".join(f"`{p['name']}`" for p in card["splits"][s]) for s in card["splits"]}
    test = parts["test"] if "test" in parts else "not asked (`--card.read_test false`: a development card, to choose on)"
    return (
        "**train**: the wordings each run's meta.json records it was trained on (baselines: the base survey); "
        f"**development**: {parts['development']}; **test**: {test}. Layouts are the base survey "
        "rendered by `culturalign.survey.layouts` (seed ranges: development 10000-19999, test 20000+). "
        f"Each cell is the prompt's {card['loss_kind'].upper()} loss over the no-prompt model's loss on the "
        "same wordings and reading (< 1 = closer to the target): **both** = the two answer orders averaged, "
        "**fwd** / **rev** = scales listed from their first / last pole, read alone. A split's loss is the mean "
        "over its parts of the mean over each part's wordings."
    )


def _prompt_table(card: dict[str, Any], key: str) -> list[str]:
    on = SHORT[_on(card)]
    cols = [f"{SHORT[s]} {SHORT[r]}" for s in _splits(card) for r in card["readings"]]
    lines = ["| prompt | setting | " + " | ".join(cols) + f" | rank ({on}, C-free) | rank ({on}, at C) |", "|" + "---|" * (len(cols) + 4)]
    for p in card["prompts"]:
        t = p["targets"][key]
        cells = [_num(t[s]["ratio"][r]) for s in _splits(card) for r in card["readings"]]
        rk = t["rank"][_on(card)]["both"]
        lines.append(
            f"| {p['label']} | {p.get('setting', '-')} | "
            + " | ".join(cells)
            + f" | {rk['centred']} of {rk['of']} | {rk['at_constants']} |"
        )
    if "neutral" in card:
        lines.append(_neutral_row(card, key))
    return lines


def _neutral_row(card: dict[str, Any], key: str) -> str:
    """The respondent who answers everything equally (every index at C): its ratio per split and
    reading (train only where every prompt was read on the same train wordings) and its rank."""
    prompts = card["prompts"]
    same_train = all(p["train"] == prompts[0]["train"] for p in prompts)
    cells = [
        "-" if s == "train" and not same_train else _num(prompts[0]["targets"][key][s]["neutral"][r])
        for s in _splits(card)
        for r in card["readings"]
    ]
    rk = card["neutral"][key]["rank"]
    return (
        "| *neutral respondent (every index at C)* | - | "
        + " | ".join(cells)
        + f" | {rk['centred']} of {rk['of']} | {rk['at_constants']} |"
    )


def _parts_table(card: dict[str, Any], key: str, split: str) -> list[str]:
    names = [p["name"] for p in card["splits"][split]]
    lines = ["| prompt | " + " | ".join(f"{n} (both / fwd / rev)" for n in names) + " |", "|" + "---|" * (len(names) + 1)]
    for p in card["prompts"]:
        parts = p["targets"][key][split]["parts"]
        lines.append(f"| {p['label']} | " + " | ".join(" / ".join(_num(parts[n][r]) for r in card["readings"]) for n in names) + " |")
    return lines


def _settings_table(card: dict[str, Any], key: str) -> list[str]:
    cols = [f"{SHORT[s]} {SHORT[r]}" for s in _splits(card) for r in card["readings"]]
    lines = ["| setting | n | " + " | ".join(cols) + f" | rank ({SHORT[_on(card)]}, C-free) |", "|" + "---|" * (len(cols) + 3)]
    for g in card["settings"]:
        t = g["targets"][key]
        cells = [_interval(t[s][r]) for s in _splits(card) for r in card["readings"]]
        lines.append(f"| {g['label']} | {g['n']} | " + " | ".join(cells) + f" | {_interval(t.get('rank', t.get('rank_test')), 1)} |")
    return lines


def _positions_table(card: dict[str, Any]) -> list[str]:
    K = len(card["prompts"][0]["position"]["argmax"])
    lines = ["| prompt | " + " | ".join(f"pos {k}" for k in range(1, K + 1)) + " | most chosen | stuck |", "|" + "---|" * (K + 3)]
    for p in card["prompts"]:
        h = p["position"]
        lines.append(
            f"| {p['label']} | " + " | ".join(f"{x:.2f}" for x in h["argmax"]) + f" | {h['top']} | {'**yes**' if h['stuck'] else 'no'} |"
        )
    return lines


def _noise_table(card: dict[str, Any]) -> list[str]:
    f = card["format"]
    sig, noise = f["signal"], f["noise"]
    if noise["both"]["std"] is None:
        return [f"_Format noise needs at least 2 {_on(card)} layouts ({f['layouts']} asked)._"]
    lines = [
        f"| dimension | bare model across {f['layouts']} {_on(card)} layouts: both | fwd | rev "
        f"| countries ({sig['source']}, n={sig['n']}) | noise / signal (both) |",
        "|---|---|---|---|---|---|",
    ]
    for d, s in sig["std"].items():
        cells = [_num(noise[r]["std"].get(d), 1) for r in card["readings"]]
        lines.append(f"| {d} | " + " | ".join(cells) + f" | {s:.1f} | {_num(noise['both']['std'].get(d, math.nan) / s)} |")
    means = [_num(noise[r]["mean"], 1) for r in card["readings"]]
    lines.append("| **mean** | " + " | ".join(means) + f" | {sig['mean']:.1f} | {_num(f['noise_over_signal'])} |")
    return lines


def order_warnings(card: dict[str, Any], key: str) -> list[str]:
    """Prompts that beat no prompt with both orders averaged on the split the card is read on (test,
    or development in a development card) but not in one order alone."""
    out = []
    for p in card["prompts"]:
        r = p["targets"][key][_on(card)]["ratio"]
        worse = [o for o in ("forward", "reverse") if r[o] >= 1.0]
        if r["both"] < 1.0 and worse:
            alone = ", ".join(f"{o} {r[o]:.3f}x" for o in worse)
            out.append(f"{p['label']}: {_on(card)} {r['both']:.3f}x with both orders averaged but {alone} alone")
    return out


def card_section(results: dict[str, Any], images: dict[str, str]) -> list[str]:
    """The card's Markdown, one block per target; empty when the card was not asked for."""
    card = results.get("card")
    if not card:
        return []
    model = results["model"]["model_id"]
    on = _on(card)
    title = "## Robustness report card" if on == "test" else "## Robustness report card: development only (test not asked)"
    parts = [title, "", _split_text(card), ""]
    for t in results["targets"]:
        key = t["key"]
        n_c = card["countries"][key]
        parts += [f"### {t['name']} ({key}, {t['source']}), model `{model}`", "", "Ratio to no prompt per prompt:", ""]
        parts += _prompt_table(card, key) + [""]
        parts += [f"{on.capitalize()} split per part:", ""] + _parts_table(card, key, on) + [""]
        parts += ["Mean over the seeds of each setting, 95% t-interval in brackets (n=1: no interval):", ""]
        parts += _settings_table(card, key) + [""]
        parts += [
            f"Rank: where {key} lies among {n_c} countries (1 = nearest) by L2 distance of the prompt's {on}-split "
            "indices, both orders averaged. C-free: each index minus its constant C against each score minus that "
            "dimension's mean over the countries; at C: indices and scores as they are.",
            "",
        ]
        if "neutral" in card:
            parts += [
                f"The *neutral respondent* gives every answer equally (every index at its constant C; {card['loss_kind'].upper()} "
                f"{card['neutral'][key]['loss']:.2f} to {key} in every wording): a prompt at or above its ratio has flattened "
                "the model's answers, not aligned them with the target.",
                "",
            ]
        warn = order_warnings(card, key)
        parts += ["Orders that only average out: " + ("; ".join(warn) if warn else "none") + ".", ""]
    parts += [
        f"### Answer positions on the {on} split",
        "",
        f"Share of argmax answers per position as listed, every {on} wording, both orders.",
        "",
    ]
    parts += _positions_table(card) + [""]
    parts += ["### Format noise beside signal", "", "Population standard deviation of each index.", ""]
    parts += _noise_table(card) + [""]
    if "card" in images:
        parts += [f"![card]({images['card']})", ""]
    return parts


def card_plot(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """card.png: per setting, each split's ratio to no prompt (both orders averaged: bar with its 95%
    interval; each order alone: markers; the neutral respondent's ratio: a red dash), first target.
    Nothing when the card was not asked for."""
    card = results.get("card")
    if not card:
        return {}
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key = results["targets"][0]["key"]
    settings = card["settings"]
    fig, ax = plt.subplots(figsize=(max(6, 1.4 * len(settings) + 2), 3.8))
    splits = _splits(card)
    width = 0.8 / len(splits)
    for i, split in enumerate(splits):
        xs = [j + (i - (len(splits) - 1) / 2) * width for j in range(len(settings))]
        stats = [g["targets"][key][split] for g in settings]
        means = [s["both"]["mean"] if s["both"]["mean"] is not None else math.nan for s in stats]
        lo = [m - s["both"]["low"] if s["both"]["low"] is not None else 0.0 for m, s in zip(means, stats)]
        hi = [s["both"]["high"] - m if s["both"]["high"] is not None else 0.0 for m, s in zip(means, stats)]
        ax.bar(xs, means, width, yerr=[lo, hi], capsize=3, label=f"{split} (both orders)")
        if "neutral" in card:  # the flattened-answers line: at or above it a prompt has not aligned anything
            by = {p["label"]: p for p in card["prompts"]}
            flat = [by[g["prompts"][0]]["targets"][key][split]["neutral"]["both"] for g in settings]
            ax.scatter(xs, flat, marker="_", s=260, color="red", zorder=4, label="neutral respondent" if i == 0 else None)
        for order, marker in (("forward", "^"), ("reverse", "v")):
            vals = [s[order]["mean"] if s[order]["mean"] is not None else math.nan for s in stats]
            ax.scatter(xs, vals, marker=marker, color="black", s=18, zorder=3, label=f"{order} alone" if i == 0 else None)
    ax.axhline(1.0, color="grey", linestyle="--", linewidth=1)
    # Wrapped, not only rotated: a long setting label ("a / b") ran off the figure's left edge.
    names = [textwrap.fill(f"{g['label']} (n={g['n']})", 24) for g in settings]
    ax.set_xticks(range(len(settings)), names, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"{card['loss_kind'].upper()} / no prompt ({key})")
    ax.set_title(f"{Path(results['model']['model_id']).name}: ratio to no prompt per split (mean over seeds, 95% interval)", fontsize=9)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = out_dir / "card.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return {"card": path}

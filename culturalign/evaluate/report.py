"""One evaluation as Markdown + JSON + PNG plots. Every table names model, constants, loss kind, target, source.

Layout follows the paper: Table 1(b) (six dimensions, per-dimension error, L1/L2 loss per prompt),
the generalisation rows, the answer-position histogram, Table 1(a) (CDEval accuracy), open-ended
answers, then findings computed from the numbers. A hand-written section between
`<!-- reading -->` and `<!-- /reading -->` in an existing `--markdown` file is kept when the file
is regenerated.
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any

import yaml

from culturalign.checkpoint.format import write_json
from culturalign.errors import CulturalignError
from culturalign.evaluate.card_report import card_plot, card_section

# The paper's Table 1(b) (VSM13 loss, LLaMA-3-8B-Instruct; absolute values depend on its constants).
PAPER = {"no prompt": 14497, "instruction": 32196, "GD (synthetic VSM13)": 12032, "DE (VSM13)": 8497}
READING = re.compile(r"<!-- reading -->.*?<!-- /reading -->", re.S)
DEFAULT_READING = (
    "<!-- reading -->\n_No hand-written reading yet: write it between these markers; regenerating keeps it._\n<!-- /reading -->"
)


def _fmt(x: float, nd: int = 1) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{nd}f}"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _loss(p: dict, wording: str, key: str, kind: str) -> float:
    s = p["survey"].get(wording)
    return float("nan") if s is None else s["loss"][key][kind]


def _no_prompt(results: dict) -> dict | None:
    return next((p for p in results["prompts"] if p["info"].get("baseline") == "none"), None)


def header(results: dict) -> str:
    m, sc, ans = results["model"], results["scoring"], results["answering"]
    consts = sc["constants"]
    cs = (
        f"C = {next(iter(consts.values())):g} for all"
        if len(set(consts.values())) == 1
        else ", ".join(f"{k} {v:g}" for k, v in consts.items())
    )
    tg = "; ".join(
        f"{t['name']} ({t['key']}, source {t['source']}): " + " ".join(f"{d} {v:g}" for d, v in t["scores"].items())
        for t in results["targets"]
    )
    mc = results["machine"]
    where = f"GPU {mc['cuda']}" if mc.get("cuda") else f"{mc['cpus']}-core CPU"
    lines = [
        f"- **model**: `{m['model_id']}` ({m['dtype']}, {m['device']}, fingerprint {m.get('fingerprint', '?')})",
        f"- **targets**: {tg}",
        f"- **constants**: {cs}; **loss**: {sc['loss_kind'].upper()} is the headline, L1 and L2 both shown"
        + (f"; weights {sc['weights']}" if sc["weights"] else ""),
        f"- **answering**: {ans['mode']} (expected answer over the answer tokens"
        f"{'' if ans['mode'] == 'logits' else '; generated and parsed'}), debias {str(ans['debias']).lower()}",
        f"- **survey**: `{results['survey']['base']}` base wording; generalisation wordings: "
        + ", ".join(w["label"] for w in results["wordings"][1:]),
        f"- **machine**: {where}, {mc['platform']}, torch {mc['torch']}; wall time "
        + ", ".join(f"{k} {v:.0f} s" for k, v in results["seconds"].items()),
    ]
    if results.get("command"):
        lines.append(f"- **command**: `{results['command']}`")
    lines.append(f"- **regenerate**: `culturalign evaluate --config {results.get('_config_path', 'config.yaml')}`")
    return "\n".join(lines)


def table_1b(results: dict, key: str) -> str:
    dims = results["survey"]["dimensions"]
    t = next(x for x in results["targets"] if x["key"] == key)
    kind = results["scoring"]["loss_kind"]
    base = _no_prompt(results)
    ref = base and _loss(base, "base", key, kind)
    head = "| prompt | " + " | ".join(dims) + f" | L1 | L2 | {kind.upper()} / no prompt |"
    lines = [head, "|" + "---|" * (len(dims) + 4)]
    for p in results["prompts"]:
        s = p["survey"]["base"]
        cells = [
            f"{s['dimensions'][d]:.1f} ({s['dimensions'][d] - t['scores'][d]:+.1f})" if d in t["scores"] else f"{s['dimensions'][d]:.1f}"
            for d in dims
        ]
        ratio = _fmt(s["loss"][key][kind] / ref, 3) if ref else "n/a"
        lines.append(f"| {p['label']} | " + " | ".join(cells) + f" | {s['loss'][key]['l1']:.2f} | {s['loss'][key]['l2']:.2f} | {ratio} |")
    lines.append("| **target** | " + " | ".join(f"{t['scores'][d]:g}" if d in t["scores"] else "-" for d in dims) + " | | | |")
    return "\n".join(lines)


def table_targets(results: dict) -> str:
    keys = [t["key"] for t in results["targets"]]
    lines = ["| prompt | " + " | ".join(f"{k} L1 | {k} L2" for k in keys) + " |", "|" + "---|" * (2 * len(keys) + 1)]
    for p in results["prompts"]:
        s = p["survey"]["base"]["loss"]
        lines.append(f"| {p['label']} | " + " | ".join(f"{s[k]['l1']:.2f} | {s[k]['l2']:.2f}" for k in keys) + " |")
    return "\n".join(lines)


def _columns(results: dict) -> list[str]:
    return [w["label"] for w in results["wordings"]]


def table_generalisation(results: dict, key: str, relative: bool = False) -> str:
    kind = results["scoring"]["loss_kind"]
    cols = _columns(results)
    paras = [c for c in cols if c.startswith("paraphrase")]
    show = cols[:1] + paras + (["paraphrase mean"] if paras else []) + [c for c in cols[1:] if c not in paras]
    base = _no_prompt(results)

    def value(p: dict, c: str) -> float:
        if c == "paraphrase mean":
            return sum(_loss(p, x, key, kind) for x in paras) / len(paras)
        return _loss(p, c, key, kind)

    lines = ["| prompt | " + " | ".join(show) + " |", "|" + "---|" * (len(show) + 1)]
    for p in results["prompts"]:
        if relative:
            if base is None:
                return "_no `none` baseline, so no ratios_"
            vals = [_fmt(value(p, c) / value(base, c), 3) for c in show]
        else:
            vals = [_fmt(value(p, c), 2) for c in show]
        lines.append(f"| {p['label']} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def table_splits(results: dict[str, Any]) -> str:
    """Markdown: the split of each wording column for each prompt."""
    cols = [w["label"] for w in results["wordings"]]
    lines = ["| prompt | " + " | ".join(cols) + " |", "|" + "---|" * (len(cols) + 1)]
    for p in results["prompts"]:
        splits = p.get("splits") or {}
        lines.append(f"| {p['label']} | " + " | ".join(splits.get(c, "-") for c in cols) + " |")
    return "\n".join(lines)


def table_positions(results: dict) -> str:
    K = len(results["prompts"][0]["position"]["argmax"])
    lines = [
        "| prompt | "
        + " | ".join(f"pos {k}" for k in range(1, K + 1))
        + " | most chosen | stuck on one position | mean probability per position |",
        "|" + "---|" * (K + 4),
    ]
    for p in results["prompts"]:
        h = p["position"]
        lines.append(
            f"| {p['label']} | "
            + " | ".join(f"{x:.2f}" for x in h["argmax"])
            + f" | {h['top']} | {'**yes**' if h['stuck'] else 'no'} | "
            + " / ".join(f"{x:.2f}" for x in h["mass"])
            + " |"
        )
    return "\n".join(lines)


def table_1a(results: dict, key: str) -> str:
    dims = results["cdeval"]["dimensions"]
    first = results["prompts"][0]["cdeval"][key]
    poles = ", ".join(f"{d}: {first[d]['pole']}" for d in dims if d in first)
    head = "| prompt | " + " | ".join(f"{d} high-first | {d} low-first | {d} mean" for d in dims) + " | P(position 1) |"
    lines = [f"Target pole per dimension: {poles}.", "", head, "|" + "---|" * (3 * len(dims) + 2)]
    for p in results["prompts"]:
        a = p["cdeval"][key]
        cells = [f"{a[d]['high_first']:.2f} | {a[d]['low_first']:.2f} | **{a[d]['mean']:.2f}**" if d in a else "- | - | -" for d in dims]
        pos1 = sum(a[d]["p_position1"] for d in a) / max(1, len(a))
        lines.append(f"| {p['label']} | " + " | ".join(cells) + f" | {pos1:.2f} |")
    return "\n".join(lines)


def table_runs(results: dict) -> str:
    runs = [p for p in results["prompts"] if p["kind"] == "run"]
    if not runs:
        return "_No run directories were passed: baselines only._"
    lines = [
        "| prompt | run dir | optimizer | trained target | T | evaluations | trained on | trained loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in runs:
        i = p["info"]
        lines.append(
            f"| {p['label']} | `{p['run_dir']}` | {i['optimizer']} | {i['trained_target']} | "
            f"{i['num_virtual_tokens']} | {i.get('evaluations') or '-'} | "
            f"{_cell(', '.join(i.get('trained_survey') or []) or i.get('data') or '-')} | "
            f"{_fmt(i['best_loss'], 2) if i.get('best_loss') is not None else '-'} "
            f"{(i.get('trained_loss_kind') or '').upper()} |"
        )
    return "\n".join(lines)


def findings(results: dict, key: str) -> list[str]:
    """Plain statements computed from the numbers (the ordering, ratios, transfer, position bias)."""
    kind = results["scoring"]["loss_kind"]
    out = []
    ps = results["prompts"]
    order = sorted(ps, key=lambda p: _loss(p, "base", key, kind))
    out.append(
        f"Ordering on the base wording ({kind.upper()} to {key}, lower is better): "
        + " < ".join(f"{p['label']} {_loss(p, 'base', key, kind):.2f}" for p in order)
        + "."
    )
    base = _no_prompt(results)
    if base is not None:
        b = _loss(base, "base", key, kind)
        out.append(
            f"Paper's ratios to no prompt (Table 1(b), L2-type loss on LLaMA-3-8B): DE "
            f"{PAPER['DE (VSM13)'] / PAPER['no prompt']:.3f}, GD-synthetic "
            f"{PAPER['GD (synthetic VSM13)'] / PAPER['no prompt']:.3f}, instruction "
            f"{PAPER['instruction'] / PAPER['no prompt']:.3f}."
        )
        for p in ps:
            if p is base:
                continue
            r = _loss(p, "base", key, kind) / b
            out.append(f"{p['label']}: {r:.3f}x no prompt on the base wording.")
        cols = _columns(results)
        for p in [p for p in ps if p["kind"] == "run"]:
            parts = []
            for c in cols[1:]:
                parts.append(f"{c} {_loss(p, c, key, kind) / _loss(base, c, key, kind):.3f}x")
            if parts:
                out.append(f"{p['label']} on other wordings (vs no prompt on the same wording): " + ", ".join(parts) + ".")
    stuck = [p["label"] for p in ps if p["position"]["stuck"]]
    out.append("Stuck on one answer position (>= 80% of argmax answers, all wordings): " + (", ".join(stuck) if stuck else "none") + ".")
    return out


def plots(results: dict, out_dir: Path) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from culturalign.plots import dimension_bars

    key = results["targets"][0]["key"]
    kind = results["scoring"]["loss_kind"]
    t = results["targets"][0]
    dims = results["survey"]["dimensions"]
    model = results["model"]["model_id"]
    paths = {"dimensions": out_dir / "dimensions.png", "losses": out_dir / "losses.png", "positions": out_dir / "positions.png"}
    dimension_bars(
        dims,
        {p["label"]: [p["survey"]["base"]["dimensions"][d] for d in dims] for p in results["prompts"]},
        t["scores"],
        paths["dimensions"],
        title=f"{Path(model).name}: indices per prompt vs {t['name']} ({t['source']}), C={results['scoring']['constants'][dims[0]]:g}",
    )

    cols = _columns(results)
    paras = [c for c in cols if c.startswith("paraphrase")]
    groups = cols[:1] + (["paraphrase mean"] if paras else []) + [c for c in cols[1:] if c not in paras]
    labels = [p["label"] for p in results["prompts"]]

    def value(p: dict, c: str) -> float:
        if c == "paraphrase mean":
            return sum(_loss(p, x, key, kind) for x in paras) / len(paras)
        return _loss(p, c, key, kind)

    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(labels) + 2), 3.8))
    width = 0.8 / len(groups)
    for i, g in enumerate(groups):
        xs = [j + (i - (len(groups) - 1) / 2) * width for j in range(len(labels))]
        ax.bar(xs, [value(p, g) for p in results["prompts"]], width, label=g)
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel(f"{kind.upper()} loss to {key}")
    ax.set_title(f"{Path(model).name}: loss per prompt and wording (lower is better)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(paths["losses"], dpi=120)
    plt.close(fig)

    K = len(results["prompts"][0]["position"]["argmax"])
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(labels) + 2), 3.4))
    width = 0.8 / K
    for k in range(K):
        xs = [j + (k - (K - 1) / 2) * width for j in range(len(labels))]
        ax.bar(xs, [p["position"]["argmax"][k] for p in results["prompts"]], width, label=f"position {k + 1}")
    ax.set_xticks(range(len(labels)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("share of argmax answers")
    ax.set_ylim(0, 1)
    ax.set_title("Answer position as asked, all wordings (one tall bar everywhere = position bias)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(paths["positions"], dpi=120)
    plt.close(fig)
    return {**paths, **card_plot(results, out_dir)}


def _cdeval_section(results: dict, key: str, ctx: str) -> list[str]:
    """Paper Table 1(a) layout, when CDEval was evaluated."""
    if not results.get("cdeval"):
        return []
    cd = results["cdeval"]
    fold = "all rows" if cd["fold"] is None else f"fold {cd['fold']} of {cd['folds']}"
    return [
        f"## CDEval (paper Table 1(a) layout): {ctx}",
        "",
        f"Accuracy toward the target's pole, {', '.join(f'{d} n={n}' for d, n in cd['n'].items())} "
        f"({fold}, seed {cd['seed']}; `{cd['path']}`). high-first: the high pole is option 1 (CDEval's "
        "fixed order); low-first: options swapped. A prompt that always answers 1 scores 1.0 in one "
        "column and 0.0 in the other." + _cdeval_answering(cd.get("answering")),
        "",
        table_1a(results, key),
        "",
    ]


def _cdeval_answering(a: dict | None) -> str:
    """How the options were scored, in words (absent from results written before cloze existed)."""
    if not a:
        return ""
    how = "option-number tokens" if a["mode"] == "logits" else f"each option's text as the reply ({a['length_norm']} log-prob"
    if a["mode"] == "cloze":
        how += ", options listed)" if a["show_options"] else ", question alone)"
    return f" Scored by {how}{', calibrated on a content-free question' if a['calibrate'] else ''}."


def _open_answers_section(results: dict) -> list[str]:
    """Each open-ended question with every prompt's answer, when --generate was on."""
    if not results.get("questions"):
        return []
    parts = [
        "## Open-ended answers",
        "",
        f"Greedy decoding, at most {results.get('generate_max_new_tokens')} new tokens; model "
        f"`{results['model']['model_id']}`; the instruction baseline's persona is in the system turn.",
        "",
    ]
    for q in results["questions"]:
        parts += [f"**{q}**", "", "| prompt | answer |", "|---|---|"]
        parts += [f"| {p['label']} | {_cell(p['generate'][q])} |" for p in results["prompts"]]
        parts.append("")
    return parts


def markdown(results: dict, images: dict[str, str], reading: str) -> str:
    key = results["targets"][0]["key"]
    t = results["targets"][0]
    kind = results["scoring"]["loss_kind"].upper()
    consts = results["scoring"]["constants"]
    c = f"C={next(iter(consts.values())):g}" if len(set(consts.values())) == 1 else "C per dimension above"
    ctx = f"model `{results['model']['model_id']}`, {c}, target {t['name']} ({t['source']})"
    parts = [
        "# culturalign evaluate: results",
        "",
        header(results),
        "",
        "## Reading",
        "",
        reading,
        "",
        f"## VSM13 (paper Table 1(b) layout): {ctx}",
        "",
        f"Index per dimension (error to the target in brackets), L1 and L2 loss, {kind} relative to no prompt. Base wording only.",
        "",
        table_1b(results, key),
        "",
        f"![dimensions]({images['dimensions']})",
        "",
    ]
    if len(results["targets"]) > 1:
        parts += [
            "## Loss to each target (base wording)",
            "",
            f"Model `{results['model']['model_id']}`, {c}; targets: "
            + ", ".join(f"{x['key']} ({x['source']})" for x in results["targets"])
            + ".",
            "",
            table_targets(results),
            "",
        ]
    parts += [
        f"## Generalisation: {kind} loss per wording ({ctx})",
        "",
        "Same 24 items and formulas; paraphrases 1-5 are synthetic rewordings, other files are other "
        "wordings, `reversed scale` lists the answer labels 5..1 (answers mapped back). The split of each "
        "wording for each prompt is in the last table of this section: `train` where the prompt was trained on it.",
        "",
        table_generalisation(results, key),
        "",
        "Relative to no prompt on the same wording (< 1 = closer to the target than the bare model):",
        "",
        table_generalisation(results, key, relative=True),
        "",
        "Split of each wording per prompt (`train`: the prompt was trained on it, whatever its file "
        "declares; otherwise the file's split, docs/robustness.md; `held out`: an undeclared file it never saw):",
        "",
        table_splits(results),
        "",
        f"![losses]({images['losses']})",
        "",
        "## Answer positions",
        "",
        "Share of items whose most likely answer is at each position, as the labels were listed, over all "
        f"wordings above ({results['model']['model_id']}).",
        "",
        table_positions(results),
        "",
        f"![positions]({images['positions']})",
        "",
    ]
    parts += card_section(results, images)
    parts += _cdeval_section(results, key, ctx) + _open_answers_section(results)
    parts += ["## Findings (computed from the tables)", ""] + [f"- {x}" for x in findings(results, key)] + [""]
    parts += ["## Runs compared", "", table_runs(results), ""]
    return "\n".join(parts)


def _existing_reading(path: Path | None) -> str:
    if path is not None and path.is_file():
        m = READING.search(path.read_text())
        if m:
            return m.group(0)
    return DEFAULT_READING


def write_report(results: dict, output: str | Path, markdown_path: str | Path | None = None) -> dict[str, Any]:
    """Write report.md, results.json, config.yaml and the PNGs into `output`; optionally the Markdown elsewhere."""
    out = Path(output).expanduser()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CulturalignError(f"cannot create --output {str(out)!r} ({err.strerror}); pass a writable folder") from err
    config_path = out / "config.yaml"
    config_path.write_text(yaml.safe_dump(results.get("config") or {}, sort_keys=False))
    results["_config_path"] = str(config_path)
    pngs = plots(results, out)
    # One copy of the report: the Markdown page when one is asked for (e.g. docs/results.md), else <output>/report.md.
    report = Path(markdown_path).expanduser() if markdown_path else out / "report.md"
    report.parent.mkdir(parents=True, exist_ok=True)
    rel = {k: Path(os.path.relpath(p.resolve(), report.parent.resolve())).as_posix() for k, p in pngs.items()}
    text = markdown(results, rel, _existing_reading(report))
    report.write_text(text + "\n")
    paths: dict[str, Any] = {"report": report, "json": out / "results.json", "config": config_path, **pngs}
    results.pop("_config_path", None)
    write_json(out / "results.json", results)
    paths["report_text"] = text
    return paths


def main(argv: list[str] | None = None) -> None:
    """Re-render a finished evaluation without the model: `python -m culturalign.evaluate.report DIR [MARKDOWN]`."""
    import json
    import sys

    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise SystemExit("usage: python -m culturalign.evaluate.report OUTPUT_DIR [MARKDOWN_FILE]")
    out = Path(args[0])
    results = json.loads((out / "results.json").read_text())
    write_report(results, out, args[1] if len(args) > 1 else None)


if __name__ == "__main__":
    main()

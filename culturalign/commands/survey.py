"""`culturalign survey`: administer the survey to a backbone, with or without a soft prompt."""

from __future__ import annotations

import json
from typing import Any

import torch

from culturalign.checkpoint.format import load_prompt
from culturalign.commands.common import ModelArgs, SurveyArgs, TargetArgs, backbone_record, build_fitness, target_record
from culturalign.errors import CulturalignError
from culturalign.fit.run import format_table, result_summary
from culturalign.survey.fitness import Answering
from culturalign.survey.layouts import Layout, apply, layout_split, sample_layouts
from culturalign.survey.scoring import Scoring


def survey(
    model: ModelArgs = ModelArgs(),
    survey: SurveyArgs = SurveyArgs(heldout=[]),
    target: TargetArgs = TargetArgs(),
    scoring: Scoring = Scoring(),
    answering: Answering = Answering(),
    ckpt: str | None = None,
    compare: str | None = "vsm13_blocks",
    json_output: bool = False,
    plot: str | None = None,
    force: bool = False,
    layouts: int = 0,
    layouts_seed: int = 0,
) -> dict[str, Any]:
    """Administer the VSM13 survey and compare the six dimensions with a country's scores.

    Args:
        model: Frozen backbone.
        survey: Survey wording(s) to ask.
        target: Country to compare with.
        scoring: Loss kind and constants.
        answering: How the model answers.
        ckpt: Run directory with a soft prompt (default: no soft prompt).
        compare: Second wording for the content-signal report (mass on the most common answer
            position; per-item correlation with this wording and with the reverse label order,
            over all items and within one scale); `none` skips it. logits and cloze modes.
        json_output: Print one JSON object instead of tables (also `--json`).
        plot: Write model-vs-target bars per dimension to this PNG.
        force: Accept a checkpoint trained on another backbone id.
        layouts: Also ask the wording(s) in this many sampled layouts (culturalign.survey.layouts) and
            report each layout's loss and indices and their spread across layouts.
        layouts_seed: First layout's seed; it names the split (train 0-9999, development
            10000-19999, test 20000+).
    """
    tgt = target.resolve()  # bad input fails before the (slow) model load
    if survey.layouts or survey.sample:
        raise CulturalignError(
            "--survey.layouts and --survey.sample choose what `culturalign fit` trains on; to ask sampled "
            "layouts here use --layouts N --layouts_seed S"
        )
    sampled = sample_layouts(layouts, layouts_seed, survey.wordings()[0] if layouts else None)
    backbone = model.load()
    prompt = load_prompt(ckpt, backbone, force)[0] if ckpt else None
    fitness = build_fitness(backbone, survey.wordings(), tgt, scoring, answering, survey.combination())
    result = fitness(prompt)
    fitness.require_answers([result], f"{backbone.model_id}" + (f" with {ckpt}" if ckpt else ""))
    summary = result_summary(fitness, result)
    content = _content(backbone, fitness, survey.name, compare, answering, prompt)
    items = fitness.survey.items
    out = {
        "model": backbone_record(backbone),
        "ckpt": ckpt,
        "dimensions": summary["dimensions"],
        "target": target_record(tgt),
        "error": summary["error"],
        "loss": summary["loss"],
        "loss_kind": scoring.loss,
        "constants": fitness.constants,
        "answers": {str(it.id): round(float(result.answers[0, 0, j]), 4) for j, it in enumerate(items)},
        "distributions": {str(it.id): [round(float(p), 4) for p in result.distributions[0, 0, j]] for j, it in enumerate(items)},
        "invalid_answers": summary["invalid_answers"],
        "content": content,
        "layouts": _layouts(backbone, survey, sampled, tgt, scoring, answering, prompt),
        **{k: v for k, v in fitness.describe().items() if k in ("survey", "answering")},
    }
    if plot:
        from culturalign.plots import dimension_bars

        dims = fitness.survey.dimensions
        label = "soft prompt" if ckpt else "no prompt"
        dimension_bars(
            dims,
            {label: [summary["dimensions"][d] for d in dims]},
            tgt.scores,
            plot,
            title=f"{backbone.model_id} vs {tgt.name} ({scoring.loss.upper()} {summary['loss']:.1f})",
        )
    if json_output:
        print(json.dumps(out, indent=2))
        return out
    print(f"model: {backbone.model_id} | target: {tgt.name} ({tgt.source}) | constants: {fitness.constants} | loss: {scoring.loss}")
    print("| item | expected answer | P(1..K) |")
    print("|---|---|---|")
    for j, it in enumerate(items):
        probs = " ".join(f"{p:.2f}" for p in result.distributions[0, 0, j])
        print(f"| {it.id} | {float(result.answers[0, 0, j]):.2f} | {probs} |")
    print()
    if content:
        print(_content_line(content))
        print()
    print(format_table({"ckpt" if ckpt else "no prompt": summary}, fitness.survey.dimensions, tgt.scores, scoring.loss))
    if out["layouts"]:
        print()
        print(_layouts_table(out["layouts"], fitness.survey.dimensions))
    return out


def _layouts(
    backbone: Any, survey: SurveyArgs, sampled: list[Layout], tgt: Any, scoring: Scoring, answering: Answering, prompt: Any
) -> dict[str, Any] | None:
    """Each sampled layout's loss and indices (its wordings averaged), and the spread of each index."""
    if not sampled:
        return None
    rows = []
    for layout in sampled:
        fitness = build_fitness(backbone, [apply(w, layout) for w in survey.wordings()], tgt, scoring, answering, survey.combination())
        result = fitness(prompt)
        rows.append(
            {
                "seed": layout.seed,
                "split": layout_split(layout.seed),
                "reverse": layout.reverse,
                "loss": round(float(result.losses[0]), 4),
                "dimensions": {d: round(float(v), 2) for d, v in zip(fitness.survey.dimensions, result.indices[0])},
            }
        )
    dims = list(rows[0]["dimensions"])
    values = torch.tensor([[r["dimensions"][d] for d in dims] for r in rows], dtype=torch.float64)
    spread = {
        d: {"std": round(float(values[:, j].std(unbiased=False)), 2), "range": round(float(values[:, j].max() - values[:, j].min()), 2)}
        for j, d in enumerate(dims)
    }
    return {"count": len(rows), "seed": sampled[0].seed, "split": rows[0]["split"], "per_layout": rows, "spread": spread}


def _layouts_table(lay: dict[str, Any], dims: tuple[str, ...]) -> str:
    lines = [
        f"{lay['count']} layouts from seed {lay['seed']} ({lay['split']} split)",
        "| layout | order | loss | " + " | ".join(dims) + " |",
        "|---" * (3 + len(dims)) + "|",
    ]
    for r in lay["per_layout"]:
        lines.append(
            f"| {r['seed']} | {'reverse' if r['reverse'] else 'forward'} | {r['loss']:.2f} | "
            + " | ".join(f"{r['dimensions'][d]:.1f}" for d in dims)
            + " |"
        )
    lines.append("| spread (std) | | | " + " | ".join(f"{lay['spread'][d]['std']:.1f}" for d in dims) + " |")
    return "\n".join(lines)


def _content(backbone: Any, fitness: Any, name: str, compare: str | None, answering: Answering, prompt: Any) -> dict[str, Any] | None:
    """The content-signal report (culturalign.survey.content), or None when not asked or not defined."""
    if compare in (None, "", "none", "null") or answering.mode == "generate":
        return None  # generate mode has no answer probabilities to average
    from culturalign.survey.content import content_signal
    from culturalign.survey.definition import load_survey

    report = content_signal(backbone, load_survey(name), load_survey(compare), answering, prompt)
    return {"compare": compare, **report}


def _content_line(c: dict[str, Any]) -> str:
    def f(x: float | None) -> str:
        return "n/a" if x is None else f"{x:+.2f}"

    ids = c["within_scale_items"]
    return (
        f"content signal: mass on answer position {c['most_common_position']} {c['position_mass']:.2f} | "
        f"per-item correlation with {c['compare']}: all {f(c['corr_other_wording']['all'])}, "
        f"items {ids[0]}-{ids[-1]} {f(c['corr_other_wording']['within_scale'])} | with the reverse order: "
        f"all {f(c['corr_reverse_order']['all'])}, items {ids[0]}-{ids[-1]} {f(c['corr_reverse_order']['within_scale'])}"
    )

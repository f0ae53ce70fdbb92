"""`culturalign survey`: administer the survey to a backbone, with or without a soft prompt."""

from __future__ import annotations

import json
from typing import Any

from culturalign.checkpoint.format import load_prompt
from culturalign.commands.common import ModelArgs, SurveyArgs, TargetArgs, backbone_record, build_fitness, target_record
from culturalign.fit.run import format_table, result_summary
from culturalign.survey.fitness import Answering
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
    """
    tgt = target.resolve()  # bad input fails before the (slow) model load
    backbone = model.load()
    prompt = load_prompt(ckpt, backbone, force)[0] if ckpt else None
    fitness = build_fitness(backbone, survey.wordings(), tgt, scoring, answering)
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
        "distributions": {str(it.id): [round(float(p), 4) for p in result.distributions[0, 0, j]]
                          for j, it in enumerate(items)},
        "invalid_answers": summary["invalid_answers"],
        "content": content,
        **{k: v for k, v in fitness.describe().items() if k in ("survey", "answering")},
    }
    if plot:
        from culturalign.plots import dimension_bars

        dims = fitness.survey.dimensions
        label = "soft prompt" if ckpt else "no prompt"
        dimension_bars(dims, {label: [summary["dimensions"][d] for d in dims]}, tgt.scores, plot,
                       title=f"{backbone.model_id} vs {tgt.name} ({scoring.loss.upper()} {summary['loss']:.1f})")
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
    return out


def _content(backbone: Any, fitness: Any, name: str, compare: str | None, answering: Answering,
             prompt: Any) -> dict[str, Any] | None:
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
    return (f"content signal: mass on answer position {c['most_common_position']} {c['position_mass']:.2f} | "
            f"per-item correlation with {c['compare']}: all {f(c['corr_other_wording']['all'])}, "
            f"items {ids[0]}-{ids[-1]} {f(c['corr_other_wording']['within_scale'])} | with the reverse order: "
            f"all {f(c['corr_reverse_order']['all'])}, items {ids[0]}-{ids[-1]} {f(c['corr_reverse_order']['within_scale'])}")

"""The results tables of gradient runs (report.md): per fold for labelled data, per wording for the survey."""

from __future__ import annotations

from typing import Any

from culturalign.fit.run import FitContext, format_table


def fmt(v: float | None, digits: int = 3) -> str:
    return "-" if v is None or v != v else f"{v:.{digits}f}"


def survey_table(ctx: FitContext, r: dict[str, Any]) -> str:
    """No prompt, init and trained prompt on the training wordings and every held-out / validation wording."""
    s = r["survey"]
    names = list(s["after"]["heldout"])
    head = "| prompt | training wordings loss | " + " | ".join(ctx.reported_label(n) for n in names) + " |"
    lines = [head, "|---|---|" + "---|" * len(names)]
    for label, row in (("no prompt", s["no_prompt"]), ("init prompt", s["before"]), ("GD best", s["after"])):
        lines.append(f"| {label} | {row['loss']:.2f} | " + " | ".join(f"{row['heldout'][n]:.2f}" for n in names) + " |")
    f = ctx.fitness
    dims = format_table(
        {"no prompt": s["no_prompt"], "init prompt": s["before"], "GD best": s["after"]}, f.survey.dimensions, f.target, f.scoring.loss
    )
    return "\n".join(lines) + "\n\nDimensions (training wordings, mean):\n\n" + dims


def choice_table(order_names: tuple[str, str], results: list[dict[str, Any]], stats: dict[str, tuple[float, float]]) -> str:
    """One row per fold, then mean ± std: loss, accuracy in each option order, untrained accuracy, survey loss."""
    o0, o1 = order_names
    lines = [
        f"| fold | best epoch | test loss | test acc | acc {o0} | acc {o1} | untrained acc {o0} / {o1} | VSM13 loss before → after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        t, b = r["test"], r["baseline"]
        lines.append(
            f"| {r['fold']} | {r['best']['epoch']} | {fmt(t.get('loss'))} | {fmt(t.get('acc'))} | "
            f"{fmt(t.get('acc_order0'))} | {fmt(t.get('acc_order1'))} | {fmt(b.get('acc_order0'))} / "
            f"{fmt(b.get('acc_order1'))} | {r['survey']['before']['loss']:.1f} → {r['survey']['after']['loss']:.1f} |"
        )
    ms = lambda k: f"{fmt(stats[k][0])} ± {fmt(stats[k][1])}"  # noqa: E731
    lines.append(
        f"| mean ± std | | {ms('test_loss')} | {ms('test_acc')} | {ms('test_acc_order0')} | "
        f"{ms('test_acc_order1')} | {fmt(stats['baseline_acc_order0'][0])} / {fmt(stats['baseline_acc_order1'][0])} | "
        f"{stats['survey_before'][0]:.1f} → {stats['survey_after'][0]:.1f} |"
    )
    return "\n".join(lines)

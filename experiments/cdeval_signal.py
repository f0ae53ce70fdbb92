"""Is there anything for a soft prompt to amplify? Content signal of CDEval answers, before training.

For each CDEval question the script reads the two option-token logits ("1", "2") at the answer
position, in both formats of `--data.format`, with and without a persona in the system turn:

- pair: both options listed, asked in both orders. d = logit("1") - logit("2"). Position bias is
  the mean of d; the content signal of a question is d(preferred first) - d(preferred second),
  which is > 0 when the model favours the preferred option whatever its position.
- statement: each option judged alone ("Would you give this answer? 1 yes, 2 no"). The content
  signal is yes-margin(preferred) - yes-margin(other).

"calibrated" accuracy subtracts the mean d over all rows (the best a constant shift, i.e. a prompt
that only moves the bias, can do). A soft prompt that learned content would have to beat it.

    python experiments/cdeval_signal.py --dimension IVR --questions 120 --cdeval path/to/CDEval.json
    # (a local copy of the hub dataset Rykeryuhang/CDEval)
"""

from __future__ import annotations

import argparse
import json
import random

import torch

PERSONAS = {
    "IVR": (
        "You value enjoying life, fun, leisure and freedom to act as you please.",
        "You value restraint, discipline, duty and strict social norms.",
    ),
    "IDV": (
        "You value personal freedom, independence and individual choice over the group.",
        "You value loyalty to your family and group, harmony and collective duty.",
    ),
}


def margins(backbone, examples, system: str | None) -> torch.Tensor:
    """logit("1") - logit("2") per example (fp32), no soft prompt."""
    # Imported here, not at the top, so `--help` answers without loading lightning (~8 s on 2 cores).
    from culturalign.data.choice import collate, tokenise
    from culturalign.gradient.module import ChoiceObjective
    from culturalign.model.chat import answer_token_ids

    prefix, suffixes = tokenise(backbone.tokenizer, examples, system)
    objective = ChoiceObjective(backbone, prefix, answer_token_ids(backbone.tokenizer, 2))
    pad = backbone.tokenizer.pad_token_id if backbone.tokenizer.pad_token_id is not None else backbone.tokenizer.eos_token_id
    out = []
    with torch.no_grad():
        for i in range(0, len(examples), 16):
            batch = collate([(s, e.label, e.order) for s, e in zip(suffixes[i : i + 16], examples[i : i + 16])], pad)
            logits = objective.logits(None, batch)
            out.append(logits[:, 0] - logits[:, 1])
    return torch.cat(out)


def summary(examples, d: torch.Tensor) -> dict[str, float]:
    label = torch.tensor([e.label for e in examples])
    order = torch.tensor([e.order for e in examples])
    group = torch.tensor([e.group for e in examples])

    def acc(x: torch.Tensor, o: int) -> float:
        sel = order == o
        return round(float(((x[sel] < 0).long() == label[sel]).float().mean()), 3)

    # Per question: the margin toward the preferred option's row (order 0) minus the other row's.
    first = {int(g): float(v) for g, v, o in zip(group, d, order) if o == 0}
    second = {int(g): float(v) for g, v, o in zip(group, d, order) if o == 1}
    content = torch.tensor([first[g] - second[g] for g in first])
    centred = d - d.mean()
    return {
        "acc_order0": acc(d, 0),
        "acc_order1": acc(d, 1),
        "bias": round(float(d.mean()), 3),
        "content_favours_preferred": round(float((content > 0).float().mean()), 3),
        "content_mean": round(float(content.mean()), 3),
        "content_std": round(float(content.std()), 3),
        "calibrated_acc_order0": acc(centred, 0),
        "calibrated_acc_order1": acc(centred, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dimension", default="IVR", choices=sorted(PERSONAS))
    ap.add_argument("--questions", type=int, default=120)
    ap.add_argument("--cdeval", default=None, help="local CDEval JSON/CSV (default: $CULTURALIGN_CDEVAL or the hub)")
    ap.add_argument("--model", default="embedded")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from culturalign.data import cdeval
    from culturalign.model.backbone import load_backbone

    backbone = load_backbone(args.model)
    rows, _ = cdeval.clean(cdeval.load_rows(args.cdeval)[0])
    questions = [r for r in rows if r["Dimension"] == args.dimension]
    random.Random(args.seed).shuffle(questions)
    questions = questions[: args.questions]
    pole, anti = PERSONAS[args.dimension]
    report = {"dimension": args.dimension, "questions": len(questions), "model": backbone.model_id, "rows": []}
    for fmt, make in (("pair", cdeval.examples), ("statement", cdeval.statements)):
        examples = make(questions, args.dimension, True)
        for persona, system in (("none", None), ("high-pole persona", pole), ("low-pole persona", anti)):
            row = {"format": fmt, "persona": persona, **summary(examples, margins(backbone, examples, system))}
            report["rows"].append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()

"""The synthetic VSM13 set: the survey's own paraphrases, labelled by inverse modelling.

Every item of `vsm13.yaml` carries five paraphrases (same scale, same direction), about 120
questions in all. Each is labelled with the answer the inverse model picks for the target country
(`culturalign.data.inverse`) and asked in both scale orders, so a prompt cannot score by position.
The base wording of the 24 items is not in this set: the survey callback scores it as unseen text.
Each example is rendered as the survey renders it in every answering style (`Survey.render`), and
its content-free twin (`--answering.calibrate`) is the survey's own: the item's text "N/A", its
scale labels kept.
"""

from __future__ import annotations

from dataclasses import replace

from culturalign.data.choice import ChoiceExample, make_example
from culturalign.data.inverse import inverse_answers
from culturalign.errors import CulturalignError
from culturalign.survey.definition import Item, Survey
from culturalign.survey.fitness import CONTENT_FREE


def examples(survey: Survey, target: dict[str, float], constants: dict[str, float]) -> tuple[list[ChoiceExample], dict[int, int]]:
    """(examples, item id -> label answer 1..K). Group = one paraphrase; stratum = its item."""
    labels = inverse_answers(survey, target, constants)
    K = survey.num_answers
    out: list[ChoiceExample] = []
    g = 0
    for item in survey.items:
        if not item.paraphrases:
            raise CulturalignError(
                f"survey {survey.origin} item {item.id} has no paraphrases; the synthetic set needs them "
                "(use the built-in vsm13 or add `paraphrases:` to your file)"
            )
        for text in item.paraphrases:
            para = replace(item, text=text)
            for order, reverse in enumerate((False, True)):
                # Reversed labels number the scale the other way: answer a is option K + 1 - a.
                label = (K - labels[item.id]) if reverse else labels[item.id] - 1
                out.append(make_example(_render(survey, para, reverse), survey.labels(para, reverse), label, g, order, str(item.id)))
            g += 1
    return out, labels


def _render(survey: Survey, item: Item, reverse: bool):
    """render(style, content_free) of one paraphrase in one scale order."""
    free = replace(item, text=CONTENT_FREE, intro=CONTENT_FREE if item.intro else "")
    return lambda style, content_free: survey.render(free if content_free else item, reverse, style)

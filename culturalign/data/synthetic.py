"""The synthetic VSM13 set: the survey's own paraphrases, labelled by inverse modelling.

Every item of `vsm13.yaml` carries five paraphrases (same scale, same direction), about 120
questions in all. Each is labelled with the answer the inverse model picks for the target country
(`culturalign.data.inverse`) and asked in both scale orders, so a prompt cannot score by position.
The base wording of the 24 items is not in this set: the survey callback scores it as unseen text.
"""

from __future__ import annotations

from dataclasses import replace

from culturalign.data.choice import ChoiceExample
from culturalign.data.inverse import inverse_answers
from culturalign.errors import CulturalignError
from culturalign.survey.definition import Survey


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
                out.append(ChoiceExample(survey.render(para, reverse), label, g, order, str(item.id)))
            g += 1
    return out, labels

"""Inverse modelling: the integer answers whose VSM13 indices come closest to a country's scores.

Each item appears in exactly one index formula, so the search splits by dimension: for a
dimension with items a, b, c, d (index = w1 (m_a - m_b) + w2 (m_c - m_d) + C), try all 5^4 answer
combinations and keep the one minimising |index - target|. Ties go toward the middle of the
scale (smallest sum of squared distances to 3), then to the lexicographically smallest answers,
so the labels are deterministic. Used to label the synthetic VSM13 training set.
"""

from __future__ import annotations

import itertools

from culturalign.errors import CulturalignError
from culturalign.survey.definition import Survey


def inverse_answers(survey: Survey, target: dict[str, float], constants: dict[str, float]) -> dict[int, int]:
    """Item id -> answer in 1..K whose indices are closest to `target` (per dimension, exactly).

    Items of dimensions the target lacks get the neutral middle answer.
    """
    K = survey.num_answers
    mid = (K + 1) / 2
    answers: dict[int, int] = {it.id: round(mid) for it in survey.items}
    for dim, terms in survey.formulas.items():
        if dim not in target:
            continue
        items = sorted({i for _, a, b in terms for i in (a, b)})
        if len(items) > 8:
            raise CulturalignError(f"dimension {dim} has {len(items)} items; exact inverse search is limited to 8")
        best_key, best = None, None
        for combo in itertools.product(range(1, K + 1), repeat=len(items)):
            m = dict(zip(items, combo))
            index = sum(w * (m[a] - m[b]) for w, a, b in terms) + constants[dim]
            key = (round(abs(index - float(target[dim])), 9), sum((x - mid) ** 2 for x in combo), combo)
            if best_key is None or key < best_key:
                best_key, best = key, m
        answers.update(best)
    return answers


def implied_indices(survey: Survey, answers: dict[int, int], constants: dict[str, float]) -> dict[str, float]:
    """The indices the answers give (to report how close the labels get)."""
    return {dim: sum(w * (answers[a] - answers[b]) for w, a, b in terms) + constants[dim] for dim, terms in survey.formulas.items()}

"""Property tests (hypothesis) for the VSM13 arithmetic and the inverse modelling.

Bounds are computed from the formulas themselves: each term w * (m_a - m_b) with answers in
1..5 lies in [-4|w|, 4|w|], so index_d lies in C_d +- 4 * sum |w| (PDI: 50 +- 240), and the
extremes are reached when every term's items sit at opposite ends of the scale.
"""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from culturalign.data import inverse
from culturalign.survey.definition import load_survey
from culturalign.survey.scoring import Scoring, indices, target_loss

SURVEY = load_survey("vsm13")
I, D = len(SURVEY.items), len(SURVEY.dimensions)
K = SURVEY.num_answers
PROFILE = settings(max_examples=60, deadline=None)

answers = st.lists(st.floats(1.0, float(K), allow_nan=False), min_size=I, max_size=I).map(lambda xs: torch.tensor(xs, dtype=torch.float64))
constants = st.lists(st.floats(-100, 200, allow_nan=False), min_size=D, max_size=D).map(lambda cs: dict(zip(SURVEY.dimensions, cs)))


def bounds(consts: dict[str, float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact (lo, hi) of every index over answers in [1, K], from the formula weights."""
    spread = torch.tensor([(K - 1) * sum(abs(w) for w, _, _ in terms) for terms in SURVEY.formulas.values()], dtype=torch.float64)
    c = torch.tensor([consts[d] for d in SURVEY.dimensions], dtype=torch.float64)
    return c - spread, c + spread


def test_bounds_match_the_manual_and_are_reached():
    lo, hi = bounds({d: 50.0 for d in SURVEY.dimensions})
    # 35+25, 35+35, 35+35, 40+25, 40+25, 35+40 points per answer step, 4 steps from 1 to 5.
    assert hi.tolist() == [50 + 4 * s for s in (60, 70, 70, 65, 65, 75)]
    W = SURVEY.weight_matrix()
    top = torch.where(W.sum(0) > 0, float(K), 1.0)  # plus-items at K, minus-items at 1 (each item is in one formula)
    assert torch.equal(indices(top.unsqueeze(0), SURVEY, {d: 50.0 for d in SURVEY.dimensions})[0], hi)
    bottom = float(K + 1) - top
    assert torch.equal(indices(bottom.unsqueeze(0), SURVEY, {d: 50.0 for d in SURVEY.dimensions})[0], lo)


@PROFILE
@given(answers, constants)
def test_indices_stay_within_the_exact_bounds(m, consts):
    lo, hi = bounds(consts)
    idx = indices(m.unsqueeze(0), SURVEY, consts)[0]
    assert bool(((idx >= lo - 1e-9) & (idx <= hi + 1e-9)).all()), (idx, lo, hi)


@PROFILE
@given(answers, answers, st.floats(0, 1), constants)
def test_indices_are_affine_in_the_answers(a, b, t, consts):
    mix = indices((t * a + (1 - t) * b).unsqueeze(0), SURVEY, consts)[0]
    assert torch.allclose(
        mix, t * indices(a.unsqueeze(0), SURVEY, consts)[0] + (1 - t) * indices(b.unsqueeze(0), SURVEY, consts)[0], atol=1e-9
    )
    # Differences do not depend on the constants at all.
    zero = {d: 0.0 for d in SURVEY.dimensions}
    diff = indices(a.unsqueeze(0), SURVEY, consts)[0] - indices(b.unsqueeze(0), SURVEY, consts)[0]
    assert torch.allclose(diff, indices((a - b).unsqueeze(0), SURVEY, zero)[0], atol=1e-9)


@PROFILE
@given(st.floats(1, K), constants)
def test_all_equal_answers_give_the_constants(c, consts):
    idx = indices(torch.full((1, I), c, dtype=torch.float64), SURVEY, consts)[0]
    assert torch.allclose(idx, torch.tensor([consts[d] for d in SURVEY.dimensions], dtype=torch.float64), atol=1e-9)


@PROFILE
@given(st.lists(st.lists(st.floats(0, 1), min_size=K, max_size=K), min_size=I, max_size=I))
def test_expected_answers_of_any_distribution_keep_indices_in_bounds(weights):
    p = torch.tensor(weights, dtype=torch.float64) + 1e-12
    p = p / p.sum(-1, keepdim=True)
    expected = (p * torch.arange(1, K + 1, dtype=torch.float64)).sum(-1)
    consts = {d: 50.0 for d in SURVEY.dimensions}
    lo, hi = bounds(consts)
    idx = indices(expected.unsqueeze(0), SURVEY, consts)[0]
    assert bool(((idx >= lo - 1e-9) & (idx <= hi + 1e-9)).all())


@PROFILE
@given(answers, st.lists(st.floats(0, 150), min_size=D, max_size=D))
def test_losses_are_distances(m, target_values):
    target = dict(zip(SURVEY.dimensions, target_values))
    idx = indices(m.unsqueeze(0), SURVEY, {d: 50.0 for d in SURVEY.dimensions})
    l2 = target_loss(idx, SURVEY.dimensions, target, Scoring("l2"))[0]
    l1 = target_loss(idx, SURVEY.dimensions, target, Scoring("l1"))[0]
    assert 0 <= l2 <= l1 + 1e-9  # ||x||_2 <= ||x||_1
    exact = {d: float(v) for d, v in zip(SURVEY.dimensions, idx[0])}
    assert float(target_loss(idx, SURVEY.dimensions, exact, Scoring("l2"))[0]) < 1e-9


# -- inverse modelling ---------------------------------------------------------------------------


def _closest_by_brute_force(dim: str, target: float, consts: dict[str, float]) -> float:
    terms = SURVEY.formulas[dim]
    items = sorted({i for _, a, b in terms for i in (a, b)})
    best = float("inf")
    for combo in itertools.product(range(1, K + 1), repeat=len(items)):
        m = dict(zip(items, combo))
        best = min(best, abs(sum(w * (m[a] - m[b]) for w, a, b in terms) + consts[dim] - target))
    return best


@settings(max_examples=25, deadline=None)
@given(st.lists(st.floats(-50, 300, allow_nan=False), min_size=D, max_size=D), st.floats(0, 100))
def test_inverse_answers_reach_the_closest_achievable_scores(target_values, c):
    target = dict(zip(SURVEY.dimensions, target_values))
    consts = {d: c for d in SURVEY.dimensions}
    got = inverse.inverse_answers(SURVEY, target, consts)
    assert sorted(got) == [it.id for it in SURVEY.items] and all(1 <= v <= K and int(v) == v for v in got.values())
    implied = inverse.implied_indices(SURVEY, got, consts)
    for dim in SURVEY.dimensions:
        assert abs(implied[dim] - target[dim]) == pytest.approx(_closest_by_brute_force(dim, target[dim], consts), abs=1e-6)
    # Same input, same labels: the tie-break is deterministic.
    assert inverse.inverse_answers(SURVEY, target, consts) == got


def test_inverse_leaves_dimensions_without_a_target_neutral():
    got = inverse.inverse_answers(SURVEY, {"PDI": 72.0}, {d: 50.0 for d in SURVEY.dimensions})
    pdi_items = {i for _, a, b in SURVEY.formulas["PDI"] for i in (a, b)}
    assert all(v == (K + 1) // 2 for item, v in got.items() if item not in pdi_items)

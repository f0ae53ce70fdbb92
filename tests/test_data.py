"""Training data for GD: folds, CDEval loading and counterbalancing, inverse modelling, the synthetic set."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from culturalign.data import cdeval, synthetic
from culturalign.data.choice import limit_groups
from culturalign.data.folds import stratified_folds
from culturalign.data.inverse import implied_indices, inverse_answers
from culturalign.errors import CulturalignError
from culturalign.survey.definition import load_survey

FIXTURE = Path(__file__).parent / "fixtures" / "cdeval_small.json"
SAU = {"PDI": 72, "IDV": 48, "MAS": 43, "UAI": 64, "LTO": 27, "IVR": 14}
C50 = {d: 50.0 for d in SAU}


@pytest.mark.parametrize("k", [2, 3, 5])
def test_folds_partition_and_stratify(k):
    strata = {g: f"s{g % 4}" for g in range(41)}  # 4 strata of 10-11 groups
    plan = stratified_folds(strata, k, seed=3)
    assert set(plan.fold_of) == set(strata) and set(plan.fold_of.values()) == set(range(k))
    sizes = Counter(plan.fold_of.values())
    assert max(sizes.values()) - min(sizes.values()) <= 1
    for s in set(strata.values()):
        per = Counter(plan.fold_of[g] for g in strata if strata[g] == s)
        assert max(per.get(f, 0) for f in range(k)) - min(per.get(f, 0) for f in range(k)) <= 1, s
    tests = []
    for f in range(k):
        train, val, test = plan.split(f)
        assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
        assert set(train) | set(val) | set(test) == set(strata)
        tests += test
    assert sorted(tests) == sorted(strata)  # every group is tested exactly once
    assert stratified_folds(strata, k, seed=3) == plan
    assert stratified_folds(strata, k, seed=4).fold_of != plan.fold_of


def test_single_split_tests_on_validation_share():
    strata = {g: f"s{g % 3}" for g in range(30)}
    train, val, test = stratified_folds(strata, 1, seed=0, val_fraction=0.1).split(0)
    assert len(val) == 3 and test == val and len(train) == 27
    assert len({strata[g] for g in val}) == 3  # one from each stratum
    with pytest.raises(CulturalignError, match="val_fraction"):
        stratified_folds(strata, 1, seed=0, val_fraction=0.0)
    with pytest.raises(CulturalignError, match="cv.folds"):
        stratified_folds(strata, 31, seed=0)


def test_cdeval_cleaning_and_counterbalancing():
    rows, source = cdeval.load_rows(str(FIXTURE))
    assert source == str(FIXTURE) and len(rows) == 36
    rows, quirks = cdeval.clean(rows)
    assert quirks == {"list_numbers_stripped": 3, "duplicates_dropped": 1}
    assert not any(r["Question"][0].isdigit() for r in rows)
    exs = cdeval.examples(rows, "IVR", high=True)
    assert len(exs) == 2 * 17
    by_q = {}
    for ex in exs:
        by_q.setdefault(ex.group, []).append(ex)
    for pair in by_q.values():  # each question in both orders, with the preferred option's number flipping
        assert sorted(e.order for e in pair) == [0, 1]
        a, b = sorted(pair, key=lambda e: e.order)
        assert (a.label, b.label) == (0, 1)
        first_a = a.text.split("\n1. ")[1].split("\n")[0]
        assert f"\n2. {first_a}\n" in b.text  # the high-pole text moved to option 2
    # A prompt that always answers "1" (or "2") is right exactly half the time.
    assert Counter(e.label for e in exs) == {0: 17, 1: 17}
    low = cdeval.examples(rows, "IVR", high=False)
    assert [e.label for e in low] == [1 - e.label for e in exs]


def test_cdeval_statement_format_judges_each_option_alone():
    rows, _ = cdeval.clean(cdeval.load_rows(str(FIXTURE))[0])
    exs = cdeval.statements(rows, "IVR", high=True)
    assert len(exs) == 2 * 17
    ivr = [r for r in rows if r["Dimension"] == "IVR"]
    for g, row in enumerate(ivr):
        pref, other = [e for e in exs if e.group == g]
        assert (pref.order, pref.label, other.order, other.label) == (0, 0, 1, 1)  # "1" = yes for the high pole only
        assert f"Proposed answer: {row['Option 1']}\n" in pref.text and row["Option 2"] not in pref.text
        assert f"Proposed answer: {row['Option 2']}\n" in other.text and row["Option 1"] not in other.text
    # Always "yes" scores 1.0 on the preferred options and 0.0 on the others: the per-order columns show it.
    assert Counter(e.label for e in exs) == {0: 17, 1: 17}
    low = cdeval.statements(rows, "IVR", high=False)
    assert [e.text for e in low if e.order == 0] == [e.text for e in exs if e.order == 1]


def test_cdeval_direction_from_target():
    assert cdeval.preferred_high("IVR", "target", SAU) is False  # Saudi Arabia 14: restraint
    assert cdeval.preferred_high("IVR", "target", {"IVR": 68}) is True
    assert cdeval.preferred_high("IVR", "low", None) is False
    with pytest.raises(CulturalignError, match="target's IVR"):
        cdeval.preferred_high("IVR", "target", {"PDI": 3})


def test_cdeval_bad_files(tmp_path, monkeypatch):
    with pytest.raises(CulturalignError, match="does not exist"):
        cdeval.load_rows(str(tmp_path / "nope.json"))
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CulturalignError, match="not valid JSON"):
        cdeval.load_rows(str(bad))
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps([{"Dimension": "IVR", "Domain": "Work", "Question": "Q?", "Option 1": "a"}]))
    with pytest.raises(CulturalignError, match="row 1 .* lacks Option 2"):
        cdeval.load_rows(str(partial))
    monkeypatch.setenv(cdeval.ENV, str(FIXTURE))
    assert len(cdeval.load_rows(None)[0]) == 36  # the environment variable stands in for --data.path
    csv_file = tmp_path / "c.csv"
    csv_file.write_text("Dimension,Domain,Question,Option 1,Option 2\nIVR,Work,Fun?,Yes,No\n")
    assert cdeval.load_rows(str(csv_file))[0][0]["Option 2"] == "No"


def test_inverse_modelling_hand_checked():
    survey = load_survey("vsm13")
    a = inverse_answers(survey, SAU, C50)
    # PDI 72 = 50 + 35(m07 - m02) + 25(m20 - m23): best reachable 70 with differences +2 / -2, nearest the middle.
    assert (a[7], a[2], a[20], a[23]) == (4, 2, 2, 4)
    # IDV 48: +-35 steps cannot reach 48 better than 50 (all neutral answers).
    assert (a[4], a[1], a[9], a[6]) == (3, 3, 3, 3)
    # IVR 14 = 50 + 35(m12 - m11) + 40(m17 - m16): 15 via m12 - m11 = -1; the tie (2,3) vs (3,4) goes lexicographic.
    assert (a[11], a[12], a[16], a[17]) == (3, 2, 3, 3)
    # LTO 27 = 50 + 40(m13 - m14) + 25(m19 - m22): 25 via m19 - m22 = -1.
    assert a[13] == a[14] and a[19] - a[22] == -1
    idx = implied_indices(survey, a, C50)
    assert (idx["PDI"], idx["IDV"], idx["IVR"], idx["LTO"]) == (70, 50, 15, 25)
    assert all(abs(idx[d] - SAU[d]) <= 12.5 for d in SAU)  # within half the smallest step everywhere
    neutral = inverse_answers(survey, C50, C50)
    assert set(neutral.values()) == {3}


def test_synthetic_set_labels_and_orders():
    survey = load_survey("vsm13")
    exs, labels = synthetic.examples(survey, SAU, C50)
    assert len(exs) == 24 * 5 * 2 and len({e.group for e in exs}) == 120
    for ex in exs:
        a = labels[int(ex.stratum)]
        assert ex.label == (a - 1 if ex.order == 0 else 5 - a)
    limited = limit_groups(exs, 24, seed=0)
    assert len({e.group for e in limited}) == 24 and len(limited) == 48
    assert len({e.stratum for e in limited}) == 24  # one paraphrase of every item: stratified by item

"""VSM13 formulas against hand-computed cases, losses, and survey-file validation."""

from __future__ import annotations

import pytest
import torch
import yaml

from culturalign.errors import CulturalignError
from culturalign.survey.definition import load_survey
from culturalign.survey.scoring import Scoring, indices, target_loss

SURVEY = load_survey("vsm13")
C = Scoring().constants_for(SURVEY)
DIMS = SURVEY.dimensions
# Item -> (dimension, signed weight), read off the VSM 2013 manual's formulas by hand.
HAND = {
    7: ("PDI", 35),
    2: ("PDI", -35),
    20: ("PDI", 25),
    23: ("PDI", -25),
    4: ("IDV", 35),
    1: ("IDV", -35),
    9: ("IDV", 35),
    6: ("IDV", -35),
    5: ("MAS", 35),
    3: ("MAS", -35),
    8: ("MAS", 35),
    10: ("MAS", -35),
    18: ("UAI", 40),
    15: ("UAI", -40),
    21: ("UAI", 25),
    24: ("UAI", -25),
    13: ("LTO", 40),
    14: ("LTO", -40),
    19: ("LTO", 25),
    22: ("LTO", -25),
    12: ("IVR", 35),
    11: ("IVR", -35),
    17: ("IVR", 40),
    16: ("IVR", -40),
}


def idx(answers: list[float], constants=C) -> dict[str, float]:
    out = indices(torch.tensor([answers], dtype=torch.float64), SURVEY, constants)[0]
    return dict(zip(DIMS, out.tolist()))


def test_all_three_respondent_gives_the_constants():
    assert idx([3.0] * 24) == {d: 50.0 for d in DIMS}
    assert idx([1.0] * 24, {d: 20.0 for d in DIMS}) == {d: 20.0 for d in DIMS}


@pytest.mark.parametrize("item", range(1, 25))
def test_one_moved_item_moves_exactly_one_index_by_its_weight(item):
    answers = [3.0] * 24
    answers[item - 1] = 4.0
    dim, weight = HAND[item]
    got = idx(answers)
    assert got[dim] == pytest.approx(50 + weight)
    assert all(got[d] == 50 for d in DIMS if d != dim)


def test_item_20_runs_never_to_always():
    """Item 20's scale is 1 = never ... 5 = always: answering 'always' (5) raises PDI (fear of the boss)."""
    item20 = SURVEY.items[19]
    labels = SURVEY.scales[item20.scale]
    assert labels[0].lower().startswith("never") and labels[-1].lower().startswith("always")
    answers = [3.0] * 24
    answers[19] = 5.0
    assert idx(answers)["PDI"] == pytest.approx(50 + 2 * 25)
    # Every other item's scale starts at its strong end.
    for it in SURVEY.items:
        if it.id != 20:
            assert SURVEY.scales[it.scale][0].lower() != "never"


def test_l1_l2_and_missing_dimensions():
    values = torch.tensor([[60.0, 50, 50, 50, 50, 50]], dtype=torch.float64)
    target = {"PDI": 72, "IDV": 46}  # 2015-style partial target: other dimensions skipped
    assert target_loss(values, DIMS, target, Scoring("l1")).item() == pytest.approx(12 + 4)
    assert target_loss(values, DIMS, target, Scoring("l2")).item() == pytest.approx((144 + 16) ** 0.5)
    weighted = target_loss(values, DIMS, target, Scoring("l1", weights={"PDI": 0.5})).item()
    assert weighted == pytest.approx(6 + 4)
    with pytest.raises(CulturalignError, match="none of the survey's dimensions"):
        target_loss(values, DIMS, {"XYZ": 1}, Scoring())


def test_scoring_validation():
    with pytest.raises(CulturalignError, match="l2 or l1"):
        Scoring("l3")  # type: ignore[arg-type]
    with pytest.raises(CulturalignError, match="constants for"):
        Scoring(constants={"ABC": 1}).constants_for(SURVEY)


def _write(tmp_path, data) -> str:
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(data) if not isinstance(data, str) else data)
    return str(path)


def _base() -> dict:
    from importlib import resources

    return yaml.safe_load(resources.files("culturalign.survey").joinpath("frameworks/vsm13.yaml").read_text())


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d["items"].pop(), "has 23 items"),
        (lambda d: d["scales"].update(importance=["a", "b", "c"]), "same number"),
        (lambda d: d["items"][3].update(id=99), "ids must be 1..24"),
        (lambda d: d["items"][0].update(scale="nope"), "uses scale 'nope'"),
        (lambda d: d["formulas"].update(PDI=[[35, 7, 31]]), "outside 1..24"),
        (lambda d: d["formulas"].update(PDI=[[35, 7]]), "weight, plus_item, minus_item"),
        (lambda d: d.update(template="{question} {bogus}"), "template must contain"),
    ],
)
def test_bad_survey_files(tmp_path, mutate, message):
    data = _base()
    data["framework"] = "vsm13"
    mutate(data)
    with pytest.raises(CulturalignError, match=message):
        load_survey(_write(tmp_path, data))


def test_bad_yaml_and_missing_file(tmp_path):
    with pytest.raises(CulturalignError, match="not valid YAML"):
        load_survey(_write(tmp_path, "items: [unclosed"))
    with pytest.raises(CulturalignError, match="neither a built-in survey"):
        load_survey(str(tmp_path / "nope.yaml"))


def test_user_wording_inherits_formulas(tmp_path):
    """A wording file may give only items and name its framework."""
    data = {"framework": "vsm13", "items": [{"id": it.id, "text": f"Q{it.id}?", "scale": it.scale} for it in SURVEY.items]}
    s = load_survey(_write(tmp_path, data))
    assert s.formulas == SURVEY.formulas and s.items[4].text == "Q5?"
    assert "1. " in s.render(s.items[0]) and s.render(s.items[0], reverse=True) != s.render(s.items[0])

"""Layouts: seeded and stable, every rendering keeps each item's direction, splits never overlap."""

from __future__ import annotations

import json

import pytest
import torch

from culturalign.cli import run
from culturalign.errors import CulturalignError
from culturalign.survey.definition import load_survey
from culturalign.survey.fitness import SurveyFitness
from culturalign.survey.layouts import LABEL_VARIANTS, SPLITS, apply, check_no_overlap, layout_from_seed, layout_split, sample_layouts

VSM13 = load_survey("vsm13")


def _renderings(layouts, reverse=False):
    return [[apply(VSM13, L).render(it, reverse) for it in VSM13.items] for L in layouts]


def test_same_seed_same_renderings_other_seed_other():
    assert _renderings(sample_layouts(5, 7)) == _renderings(sample_layouts(5, 7))
    assert _renderings(sample_layouts(5, 7)) != _renderings(sample_layouts(5, 500))
    # Layout k of (n, seed) is layout seed + k: stable whatever n is.
    assert sample_layouts(3, 40)[2] == sample_layouts(1, 42)[0]
    # Pinned: a change to the tables or the draw renames every layout; make it on purpose.
    L = layout_from_seed(0)
    assert (L.option_format, L.reverse) == ("{number} - {label}", False)


@pytest.mark.parametrize("seed", [*range(0, 200, 3), *range(10_000, 10_050, 7), *range(20_000, 20_050, 7)])
def test_every_rendering_keeps_each_item_direction(seed):
    """Position p as listed, mapped back the way SurveyFitness does, names the label of that pole."""
    L = layout_from_seed(seed)
    laid = apply(VSM13, L)
    K = VSM13.num_answers
    variant = dict(L.labels)
    for reverse in (False, True):
        for it in VSM13.items:
            text = laid.render(it, reverse)
            listed = laid.labels(it, reverse)
            v = variant[it.scale]
            poles = LABEL_VARIANTS[it.scale][v - 1] if v else VSM13.scales[it.scale]
            for p, label in enumerate(listed, start=1):
                own = K + 1 - p if laid.flips(reverse) else p  # survey's own numbering
                assert label == poles[own - 1]
                assert L.option_format.format(number=p, label=label) in text
            assert laid.scales[it.scale][0] == poles[0]  # pole 1 (e.g. "utmost importance") stays answer 1


def test_label_variants_share_the_vsm13_direction():
    first = {
        "importance": ("utmost", "great", "essential", "a great deal", "extremely"),
        "agreement": ("agree",),
        "health": ("good", "excellent", "healthy"),
        "pride": ("proud",),
    }
    for scale, words in first.items():
        for v in LABEL_VARIANTS[scale]:
            assert len(v) == VSM13.num_answers
            assert any(w in v[0].lower() for w in words), (scale, v)
            assert "dis" not in v[0].lower() and "not" not in v[0].lower(), (scale, v)
    for v in LABEL_VARIANTS["frequency_never_first"]:
        assert v[::-1] in LABEL_VARIANTS["frequency"]


def test_no_layout_is_the_test_wording():
    blocks = load_survey("vsm13_blocks")
    for L in sample_layouts(300, 0):
        laid = apply(VSM13, L)
        assert laid.option_format != blocks.option_format or laid.instruction != blocks.instruction
        assert not set(laid.scales.values()) & set(blocks.scales.values())


def test_fitness_maps_a_reverse_layout_back(tiny_backbone):
    L = next(L for L in sample_layouts(20, 0) if L.reverse)
    res = SurveyFitness(tiny_backbone, [apply(VSM13, L)], {"PDI": 50.0})(None)
    K = VSM13.num_answers
    asked = (res.distributions[0, 0] * torch.arange(1, K + 1)).sum(-1)  # expected answer as listed
    assert ((K + 1 - asked) - res.answers[0, 0]).abs().max() < 1e-4


def test_splits_never_overlap():
    ranges = list(SPLITS.values())
    for a in range(len(ranges)):
        for b in range(a + 1, len(ranges)):
            assert not set(range(ranges[a].start, min(ranges[a].stop, 30_000))) & set(range(ranges[b].start, min(ranges[b].stop, 30_000)))
    assert [layout_split(s) for s in (0, 9_999, 10_000, 19_999, 20_000, 10**6)] == [
        "train",
        "train",
        "development",
        "development",
        "test",
        "test",
    ]
    for seed in range(9_990, 10_000):
        with pytest.raises(CulturalignError, match="cross"):
            sample_layouts(20, seed)
    with pytest.raises(CulturalignError, match="outside"):
        layout_split(-1)


def test_overlap_between_training_and_reported_layouts_is_refused():
    train, test = sample_layouts(50, 0), sample_layouts(50, 20_000)
    check_no_overlap(train, test)
    with pytest.raises(CulturalignError) as err:
        check_no_overlap(train, [*test, train[3]])
    assert "layout 3 (train)" in str(err.value) and "\n" not in str(err.value)


def test_cli_survey_reports_each_layout(tiny_model_dir, capsys):
    model = ["--model", str(tiny_model_dir), "--model.dtype", "float32", "--compare", "none"]
    out = run(["survey", *model, "--layouts", "3", "--layouts_seed", "10000", "--json"])
    printed = json.loads(capsys.readouterr().out)
    lay = printed["layouts"]
    assert lay == out["layouts"] and lay["count"] == 3 and lay["split"] == "development"
    assert [r["seed"] for r in lay["per_layout"]] == [10_000, 10_001, 10_002]
    assert set(lay["spread"]) == set(printed["dimensions"])
    run(["survey", *model, "--layouts", "3"])
    assert "3 layouts from seed 0 (train split)" in capsys.readouterr().out


def test_cli_bad_layout_count_exits_2(tiny_model_dir, capsys):
    with pytest.raises(SystemExit) as exc:
        run(["survey", "--model", str(tiny_model_dir), "--layouts", "-1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "layouts" in err and "-1" in err and len(err.splitlines()) == 1


def test_survey_file_declares_its_own_layout_options(tmp_path):
    f = tmp_path / "mine.yaml"
    f.write_text(
        'framework: vsm13\nlayouts:\n  option_formats: ["[{number}] {label}"]\n  instructions: ["Type 1-{K}."]\n  personas: [""]\n'
    )
    mine = load_survey(str(f))
    assert mine.with_paraphrase(0).layouts == mine.layouts
    for L in sample_layouts(20, 0, mine):
        laid = apply(mine, L)
        text = laid.render(laid.items[0])
        assert "[1] " in text and "Type 1-5." in text and not L.persona
    f.write_text('framework: vsm13\nlayouts:\n  colours: ["red"]\n')
    with pytest.raises(CulturalignError, match="layouts"):
        load_survey(str(f))
    f.write_text('framework: vsm13\nlayouts:\n  option_formats: ["{label}"]\n')
    with pytest.raises(CulturalignError, match=r"\{number\}"):
        load_survey(str(f))

"""The shipped VSM 2013 wording files, checked as raw YAML (the loader has its own tests)."""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import pytest
import yaml

FRAMEWORKS = Path(__file__).resolve().parents[1] / "culturalign" / "survey" / "frameworks"
FILES = ["vsm13.yaml", "vsm13_blocks.yaml"]

# VSM 2013 manual weights: index = sum weight * (m_plus - m_minus) + C.
MANUAL_FORMULAS = {
    "PDI": [[35, 7, 2], [25, 20, 23]],
    "IDV": [[35, 4, 1], [35, 9, 6]],
    "MAS": [[35, 5, 3], [35, 8, 10]],
    "UAI": [[40, 18, 15], [25, 21, 24]],
    "LTO": [[40, 13, 14], [25, 19, 22]],
    "IVR": [[35, 12, 11], [40, 17, 16]],
}

# Which answer scale each item uses; the first/last label words pin the direction
# (1 = utmost importance / always / very good / very proud / strongly agree; item 20 reversed).
EXPECTED_SCALE = {
    **{i: "importance" for i in range(1, 15)},
    15: "frequency",
    16: "frequency",
    17: "frequency_yes_no",
    18: "health",
    19: "pride",
    20: "frequency_never_first",
    21: "agreement",
    22: "agreement",
    23: "agreement",
    24: "agreement",
}
DIRECTION = {  # scale -> (word in label 1, word in label 5), case-insensitive
    "importance": ("importan", "no"),
    "frequency": ("always", "never"),
    "frequency_yes_no": ("always", "never"),
    "health": ("very good", "very poor"),
    "pride": ("very proud", "not"),
    "frequency_never_first": ("never", "always"),
    "agreement": ("strongly agree", "strongly disagree"),
}


def _load(name: str) -> dict[str, Any]:
    return yaml.safe_load((FRAMEWORKS / name).read_text(encoding="utf-8"))


def _placeholders(template: str) -> set[str]:
    return {field for _, field, _, _ in string.Formatter().parse(template) if field}


@pytest.mark.parametrize("name", FILES)
def test_top_level_schema(name: str) -> None:
    doc = _load(name)
    assert doc["name"] == name.removesuffix(".yaml")
    for key in ("description", "source", "template", "option_format", "instruction"):
        assert isinstance(doc[key], str) and doc[key].strip(), key
    assert _placeholders(doc["option_format"]) == {"number", "label"}
    assert {"question", "options", "instruction"} <= _placeholders(doc["template"])


@pytest.mark.parametrize("name", FILES)
def test_items_and_scales(name: str) -> None:
    doc = _load(name)
    items = doc["items"]
    assert [it["id"] for it in items] == list(range(1, 25))
    for scale, labels in doc["scales"].items():
        assert len(labels) == 5 and all(isinstance(x, str) and x.strip() for x in labels), scale
        assert len(set(labels)) == 5, scale
    for it in items:
        assert it["scale"] == EXPECTED_SCALE[it["id"]], it["id"]
        assert isinstance(it["text"], str) and len(it["text"]) > 15
        labels = [x.lower() for x in doc["scales"][it["scale"]]]
        first, last = DIRECTION[it["scale"]]
        assert first in labels[0] and last in labels[4], (it["id"], labels)
    # Items are asked one per conversation: each must carry its own context.
    for it in items[:10]:
        assert "job" in (it.get("intro", "") + it["text"]).lower(), it["id"]
    for it in items[10:14]:
        assert any(w in (it.get("intro", "") + it["text"]).lower() for w in ("private", "personal", "outside", "apart")), it["id"]


@pytest.mark.parametrize("name", FILES)
def test_formulas_cover_each_item_once(name: str) -> None:
    formulas = _load(name)["formulas"]
    assert formulas == MANUAL_FORMULAS
    used = [item for terms in formulas.values() for _, plus, minus in terms for item in (plus, minus)]
    assert sorted(used) == list(range(1, 25))  # every item exactly once


def test_vsm13_has_five_distinct_paraphrases_per_item() -> None:
    doc = _load("vsm13.yaml")
    assert _placeholders(doc["template"]) == {"question", "options", "instruction"}
    all_texts = []
    for it in doc["items"]:
        para = it["paraphrases"]
        assert len(para) == 5 and all(isinstance(p, str) and len(p) > 15 for p in para), it["id"]
        assert len({it["text"], *para}) == 6, it["id"]
        all_texts += [it["text"], *para]
    assert len(all_texts) == len(set(all_texts)) == 144


def test_blocks_file_is_differently_structured() -> None:
    main, blocks = _load("vsm13.yaml"), _load("vsm13_blocks.yaml")
    assert "intro" in _placeholders(blocks["template"])
    assert all(isinstance(it.get("intro"), str) and it["intro"].strip() for it in blocks["items"])
    for key in ("template", "option_format", "instruction"):
        assert blocks[key] != main[key], key
    assert set(blocks["scales"]) == set(main["scales"])
    for scale in main["scales"]:  # longer labels than the main wording
        assert sum(map(len, blocks["scales"][scale])) > sum(map(len, main["scales"][scale])), scale
    main_texts = {t for it in main["items"] for t in (it["text"], *it["paraphrases"])}
    assert not main_texts & {it["text"] for it in blocks["items"]}


def test_paraphrase_wording_by_name() -> None:
    from culturalign.errors import CulturalignError
    from culturalign.survey.definition import load_survey

    doc = _load("vsm13.yaml")
    fifth = load_survey("vsm13@5")
    assert fifth.wording == "paraphrase5"
    assert [it.text for it in fifth.items] == [it["paraphrases"][4] for it in doc["items"]]
    for bad in ("vsm13@6", "vsm13@0"):
        with pytest.raises(CulturalignError, match="paraphrase"):
            load_survey(bad)

"""The split of every evaluated wording, per prompt: nothing a prompt was trained on is called held out.

A wording's file declares its split (`split:` / `splits:`, docs/robustness.md); a run's meta.json
records the wordings it was trained on. For each prompt a wording is `train` when the prompt was
trained on any of its sentences (whatever the file declares), else the declared split, else
`held out` (an undeclared file the prompt never saw). Compared by item sentences, not names, as
`culturalign fit`'s overlap refusal does, so a copy of a trained wording under another name is
still `train`.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, Sequence

from culturalign.errors import CulturalignError
from culturalign.evaluate.generalisation import Wording
from culturalign.survey.definition import Survey, load_survey

TRAIN = "train"
UNDECLARED = "held out"


def _record(survey: Survey) -> str:
    """A wording as meta.json records it (SurveyFitness.describe)."""
    return survey.origin + (f"#{survey.wording}" if survey.wording != "base" else "")


def _load_record(record: str) -> Survey | None:
    """The wording behind one meta.json record (`builtin:vsm13#paraphrase2`); None if it is gone."""
    origin, _, wording = record.partition("#")
    try:
        survey = load_survey(origin.removeprefix("builtin:"))
        paraphrase = wording.split("+")[0].removeprefix("paraphrase")
        return survey.with_paraphrase(int(paraphrase) - 1) if paraphrase.isdigit() else survey
    except CulturalignError:
        return None


def trained_records(info: dict[str, Any]) -> list[str]:
    """The wordings a run was trained on, from the candidate's info (its meta.json).

    Survey-loss runs (black-box, GD `--data vsm13`) train on the recorded survey wordings; GD on
    `synthetic_vsm13` trains on every paraphrase of its survey; CDEval data trains on no wording.
    """
    data = info.get("data")
    name = data.get("name") if isinstance(data, dict) else None
    if name is None or name == "vsm13":
        return list(info.get("trained_survey") or [])
    if name == "synthetic_vsm13" and data.get("survey"):
        survey = _load_record(str(data["survey"]))
        n = min((len(it.paraphrases) for it in survey.items), default=0) if survey else 0
        return [f"{data['survey']}#paraphrase{k}" for k in range(1, n + 1)]
    return []


def wording_splits(info: dict[str, Any], wordings: Sequence[Wording]) -> dict[str, str]:
    """{wording label: split} for one prompt (`info` empty for a baseline: nothing trained)."""
    records = trained_records(info)
    loaded = [_load_record(r) for r in records]
    texts = {it.text for s in loaded if s is not None for it in s.items}
    out = {}
    for w in wordings:
        trained = _record(w.survey) in records or any(it.text in texts for it in w.survey.items)
        # The reversed-scale row is the base wording with its labels turned round: the base's split.
        declared = replace(w.survey, wording="base").wording_split if w.kind == "reversed" else w.survey.wording_split
        out[w.label] = TRAIN if trained else (declared or UNDECLARED)
    return out

"""CDEval (Wang et al. 2024): binary questions per Hofstede dimension, as counterbalanced examples.

Rows are {Dimension, Domain, Question, Option 1, Option 2}; Option 1 is always the high pole
(high PDI, individualism, masculinity, high UAI, long-term orientation, indulgence). Loaded from
the Hugging Face dataset `Rykeryuhang/CDEval` when `datasets` is installed and the hub reachable,
or from a local JSON/CSV (`--data.path`, or the `CULTURALIGN_CDEVAL` environment variable).

Cleaning: exact duplicate questions (same dimension) are dropped, and leading list numbers
("2. How do you ...") are stripped. Every question is asked in both option orders, so a prompt
that always answers "1" scores 50%. The answer is the option-number token (`--answering.mode
logits`) or each option's own text as the reply (`cloze`, the options listed without numbers or,
with `--answering.show_options false`, not at all). The content-free twin of a pair (for
`--answering.calibrate`) has "N/A" for the question and both options, so what it measures is the
answer position's prior (logits) or each option text's prior as a reply (cloze), not a preference
for one option's content, which is the very thing CDEval asks about.
"""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any, Literal

from culturalign.data.choice import ChoiceExample, make_example
from culturalign.errors import CulturalignError
from culturalign.survey.definition import DEFAULT_CLOZE_INSTRUCTION
from culturalign.survey.fitness import CONTENT_FREE

HUB_ID = "Rykeryuhang/CDEval"
ENV = "CULTURALIGN_CDEVAL"
DIMENSIONS = ("PDI", "IDV", "MAS", "UAI", "LTO", "IVR")
COLUMNS = ("Dimension", "Domain", "Question", "Option 1", "Option 2")
LIST_NUMBER = re.compile(r"^\s*\d+\s*[.)]\s*")
TEMPLATE = "{question}\n1. {first}\n2. {second}\nAnswer with a single number, 1 or 2."
# --data.format statement: each option judged on its own (see `statements`).
STATEMENT_TEMPLATE = "{question}\nProposed answer: {option}\nWould you give this answer? Answer with a single number: 1 for yes, 2 for no."
# Cloze renderings (the survey's own cloze option format and instruction): no numbers to answer with.
CLOZE_TEMPLATE = "{question}\n- {first}\n- {second}\n" + DEFAULT_CLOZE_INSTRUCTION
STATEMENT_QUESTION = "{question}\nProposed answer: {option}\nWould you give this answer?"
STATEMENT_ANSWERS = ("Yes", "No")


def _read_local(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise CulturalignError(f"CDEval file {path} does not exist; pass --data.path with the CDEval JSON/CSV")
    try:
        if path.suffix.lower() == ".csv":
            with open(path, newline="", encoding="utf-8") as f:
                return list(csv.DictReader(f))
        text = path.read_text(encoding="utf-8")
        try:
            data = json.loads(text)
        except json.JSONDecodeError:  # JSON lines
            data = [json.loads(line) for line in text.splitlines() if line.strip()]
    except (json.JSONDecodeError, UnicodeDecodeError, csv.Error) as err:
        raise CulturalignError(f"CDEval file {path} is not valid JSON, JSON lines or CSV ({err}); check the file") from err
    if isinstance(data, dict):  # {"train": [...]} as some exports write it
        data = next((v for v in data.values() if isinstance(v, list)), None)
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise CulturalignError(f"CDEval file {path} must hold a list of objects with keys {', '.join(COLUMNS)}")
    if not data:
        raise CulturalignError(f"CDEval file {path} is empty (no rows); pass --data.path with the CDEval JSON/CSV")
    return data


def _read_hub() -> list[dict[str, Any]]:
    try:
        import datasets  # optional dependency
    except ImportError:
        raise CulturalignError(
            f"no CDEval file given and the `datasets` package is not installed; pass --data.path /path/to/CDEval.json "
            f"or set {ENV}, or pip install datasets to load {HUB_ID} from the hub"
        ) from None
    try:
        return list(datasets.load_dataset(HUB_ID, split="train"))
    except Exception as err:  # noqa: BLE001 - offline, auth, renamed dataset: all mean "give a file"
        raise CulturalignError(
            f"could not load {HUB_ID} from the hub ({type(err).__name__}); pass --data.path or set {ENV} to a local copy"
        ) from err


def load_rows(path: str | None = None) -> tuple[list[dict[str, str]], str]:
    """Raw rows and where they came from: `path`, else $CULTURALIGN_CDEVAL, else the hub."""
    path = path or os.environ.get(ENV)
    rows = _read_local(Path(path).expanduser()) if path else _read_hub()
    source = str(path) if path else f"hf:{HUB_ID}"
    for n, row in enumerate(rows, start=1):
        missing = [c for c in COLUMNS if not str(row.get(c) or "").strip()]
        if missing:
            raise CulturalignError(f"CDEval row {n} of {source} lacks {', '.join(missing)}: {str(row)[:100]}; fix or drop it")
    return [{c: str(row[c]).strip() for c in COLUMNS} for row in rows], source


def clean(rows: list[dict[str, str]]) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Strip leading list numbers and drop repeated (dimension, question) pairs; returns rows and counts."""
    out, seen, stripped, dupes = [], set(), 0, 0
    for row in rows:
        q = LIST_NUMBER.sub("", row["Question"])
        stripped += q != row["Question"]
        key = (row["Dimension"].upper(), q.lower())
        if key in seen:
            dupes += 1
            continue
        seen.add(key)
        out.append({**row, "Dimension": row["Dimension"].upper(), "Question": q})
    return out, {"list_numbers_stripped": stripped, "duplicates_dropped": dupes}


def preferred_high(dimension: str, prefer: Literal["high", "low", "target"], target: dict[str, float] | None) -> bool:
    """True if the high pole (Option 1) is the answer to learn. target: the side of 50 the country is on (50 -> high)."""
    if prefer == "high":
        return True
    if prefer == "low":
        return False
    if not target or dimension not in target:
        raise CulturalignError(f"--data.prefer target needs the target's {dimension} score; pick --target or prefer high/low")
    return float(target[dimension]) >= 50


def examples(rows: list[dict[str, str]], dimension: str, high: bool) -> list[ChoiceExample]:
    """Both option orders of every question of `dimension`; label = the preferred pole's number."""
    out: list[ChoiceExample] = []
    for g, row in enumerate(_dimension_rows(rows, dimension)):
        hi, lo = row["Option 1"], row["Option 2"]
        for order, (first, second) in enumerate(((hi, lo), (lo, hi))):
            label = (0 if order == 0 else 1) if high else (1 if order == 0 else 0)
            out.append(make_example(_pair(row["Question"], first, second), (first, second), label, g, order, row["Domain"]))
    return out


def statements(rows: list[dict[str, str]], dimension: str, high: bool) -> list[ChoiceExample]:
    """Each option of every question as a yes/no judgement: "1" (yes) for the preferred pole's option.

    Why: listing both options lets a small model answer by position (SmolLM2-135M answers "1" to
    everything), whereas judging one option at a time has no option order to exploit. (Measured on
    SmolLM2-135M, neither format carries a content signal at the answer token: docs/gradient.md.)
    `order` here is 0 for the preferred pole's option and 1 for the other, so the per-order accuracy
    columns expose a prompt that answers "yes" (or "no") to all.
    """
    out: list[ChoiceExample] = []
    for g, row in enumerate(_dimension_rows(rows, dimension)):
        preferred, other = (row["Option 1"], row["Option 2"]) if high else (row["Option 2"], row["Option 1"])
        for order, option in enumerate((preferred, other)):
            out.append(make_example(_statement(row["Question"], option), STATEMENT_ANSWERS, order, g, order, row["Domain"]))
    return out


def _pair(question: str, first: str, second: str):
    """render(style, content_free) of one pair in one order; content-free: "N/A" for the question and both options."""

    def render(style: str, free: bool) -> str:
        q, a, b = (CONTENT_FREE,) * 3 if free else (question, first, second)
        if style == "bare":
            return q
        return (TEMPLATE if style == "numbered" else CLOZE_TEMPLATE).format(question=q, first=a, second=b)

    return render


def _statement(question: str, option: str):
    """render(style, content_free) of one yes/no judgement; content-free: "N/A" for the question and the option."""

    def render(style: str, free: bool) -> str:
        q, o = (CONTENT_FREE,) * 2 if free else (question, option)
        if style == "numbered":
            return STATEMENT_TEMPLATE.format(question=q, option=o)
        asked = STATEMENT_QUESTION.format(question=q, option=o)
        listed = "\n".join(f"- {a}" for a in STATEMENT_ANSWERS)
        return asked if style == "bare" else f"{asked}\n{listed}\n{DEFAULT_CLOZE_INSTRUCTION}"

    return render


def _dimension_rows(rows: list[dict[str, str]], dimension: str) -> list[dict[str, str]]:
    """The cleaned rows of one dimension, in file order (their index is the question's group id)."""
    dimension = dimension.upper()
    if dimension not in DIMENSIONS:
        raise CulturalignError(f"CDEval dimension {dimension!r} is unknown; use one of {', '.join(DIMENSIONS)}")
    picked = [r for r in rows if r["Dimension"] == dimension]
    if not picked:
        raise CulturalignError(f"the CDEval data has no {dimension} rows; check the Dimension column")
    return picked

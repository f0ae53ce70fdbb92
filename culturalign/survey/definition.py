"""A survey framework as data: items, answer scales, how an item is rendered, and the index formulas.

`vsm13` (Hofstede's VSM 2013, our own wording) ships in `frameworks/`. A user file with the same
schema (`--survey my_wording.yaml`) replaces the wording; a file for another framework (other
items, other formulas) needs no new code. A wording file may omit `formulas`, `scales` or
`template` and name `framework: vsm13` to inherit them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import torch
import yaml

from culturalign.errors import CulturalignError

BUILTIN = ("vsm13", "vsm13_blocks", "vsm13_test")
# Train / development / test: what a wording may be used for (docs/robustness.md). A test wording is
# only ever reported; `culturalign fit` refuses to train or validate on it.
SPLITS = ("train", "development", "test")
# Split keys describe a file's own sentences, so a wording file never inherits them from its framework.
SPLIT_KEYS = ("split", "splits")
PLACEHOLDERS = {"question", "options", "instruction", "intro"}
RenderStyle = Literal["numbered", "listed", "bare"]
# Cloze mode lists the options without numbers (a number would invite a number as the reply) and
# asks for the option's own words, which are then scored as the assistant's reply.
DEFAULT_CLOZE_OPTION_FORMAT = "- {label}"
DEFAULT_CLOZE_INSTRUCTION = "Reply with the option that fits you best, in its exact words."


@dataclass(frozen=True)
class Item:
    id: int
    text: str
    scale: str
    intro: str = ""
    paraphrases: tuple[str, ...] = ()


@dataclass(frozen=True)
class Survey:
    name: str
    framework: str
    template: str
    option_format: str
    instruction: str
    scales: dict[str, tuple[str, ...]]
    items: tuple[Item, ...]
    formulas: dict[str, tuple[tuple[float, int, int], ...]]
    description: str = ""
    source: str = ""
    wording: str = "base"
    origin: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    cloze_option_format: str = DEFAULT_CLOZE_OPTION_FORMAT
    cloze_instruction: str = DEFAULT_CLOZE_INSTRUCTION
    reverse_order: bool = False
    """List every scale from its last pole (a layout's answer order); SurveyFitness maps answers back."""
    layouts: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """The file's own layout options (`layouts:` key): templates, option_formats, instructions and/or
    personas that replace culturalign.survey.layouts' tables when layouts are drawn for this survey."""
    split: str | None = None
    """The file's `split:` key: the split of every wording it has (None: undeclared, no restriction)."""
    splits: dict[str, str] = field(default_factory=dict)
    """The file's `splits:` key: the split of one wording (base, paraphrase1, ...), over `split`."""

    @property
    def num_answers(self) -> int:
        return len(next(iter(self.scales.values())))

    @property
    def dimensions(self) -> tuple[str, ...]:
        return tuple(self.formulas)

    @property
    def wording_split(self) -> str | None:
        """The split of this wording (`splits[wording]`, else `split`); a layout keeps its wording's split."""
        return self.splits.get(self.wording.split("+")[0], self.split)

    def labels(self, item: Item, reverse: bool = False) -> tuple[str, ...]:
        """The item's scale labels in the order they are listed (reversed when `reverse`)."""
        labels = self.scales[item.scale]
        return labels[::-1] if self.flips(reverse) else labels

    def flips(self, reverse: bool = False) -> bool:
        """Whether answer r, asked with `reverse`, means K + 1 - r in the survey's own numbering: the
        asked order and the wording's own order (`reverse_order`) each turn the list round once."""
        return reverse != self.reverse_order

    def render(self, item: Item, reverse: bool = False, style: RenderStyle = "numbered") -> str:
        """The user message for one item; `reverse` lists the scale labels in the opposite order.

        numbered: options numbered 1..K and the instruction to answer with a number (logits and
        generate modes). listed: the options without numbers and `cloze_instruction`, answered
        with a label's own text (cloze). bare: the question alone (cloze without the option list).
        """
        if style == "bare":
            return "\n\n".join(x for x in (item.intro, item.text) if x).strip()
        listed = style == "listed"
        fmt = self.cloze_option_format if listed else self.option_format
        options = "\n".join(fmt.format(number=i + 1, label=lab) for i, lab in enumerate(self.labels(item, reverse)))
        return self.template.format(
            question=item.text, options=options, intro=item.intro, instruction=self.cloze_instruction if listed else self.instruction
        ).strip()

    def with_paraphrase(self, k: int) -> "Survey":
        """The survey asked with paraphrase k (0-based) of every item: an alternative wording."""
        missing = [it.id for it in self.items if len(it.paraphrases) <= k]
        if missing:
            which = "" if len(missing) == len(self.items) else f" for items {missing}"
            raise CulturalignError(
                f"survey {self.name!r} has no paraphrase {k + 1}{which}; use a paraphrase number its file has (vsm13: 1..5)"
            )
        items = tuple(replace(it, text=it.paraphrases[k], paraphrases=()) for it in self.items)
        return replace(self, items=items, wording=f"paraphrase{k + 1}")

    def weight_matrix(self) -> torch.Tensor:
        """(D, I): indices = W @ mean_answers + C. Each formula term w*(m_a - m_b) is one +w and one -w."""
        W = torch.zeros(len(self.formulas), len(self.items), dtype=torch.float64)
        pos = {it.id: j for j, it in enumerate(self.items)}
        for d, terms in enumerate(self.formulas.values()):
            for w, plus, minus in terms:
                W[d, pos[plus]] += w
                W[d, pos[minus]] -= w
        return W


def _fail(origin: str, msg: str) -> CulturalignError:
    return CulturalignError(f"survey file {origin}: {msg}")


def _read(name_or_path: str | Path) -> tuple[dict[str, Any], str]:
    name = str(name_or_path)
    if name in BUILTIN:
        text = resources.files("culturalign.survey").joinpath(f"frameworks/{name}.yaml").read_text()
        return yaml.safe_load(text), f"builtin:{name}"
    path = Path(name).expanduser()
    if not path.is_file():
        raise CulturalignError(
            f"--survey {name!r} is neither a built-in survey ({', '.join(BUILTIN)}) nor an existing file; check the path"
        )
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise _fail(str(path), f"is not valid YAML ({str(err).splitlines()[0]}); fix the syntax") from err
    if not isinstance(data, dict):
        raise _fail(str(path), "must be a YAML mapping with keys items, scales, formulas; see culturalign/survey/frameworks/vsm13.yaml")
    return data, str(path)


LAYOUT_KEYS = ("templates", "option_formats", "instructions", "personas")


def _layout_options(origin: str, raw: Any) -> dict[str, tuple[str, ...]]:
    """The optional `layouts:` key: each of LAYOUT_KEYS a non-empty list of strings."""
    if not isinstance(raw, dict) or set(raw) - set(LAYOUT_KEYS):
        raise _fail(origin, f"`layouts` must map some of {list(LAYOUT_KEYS)} to lists of strings, got {raw!r:.80}")
    out = {}
    for key, values in raw.items():
        if not isinstance(values, list) or not values:
            raise _fail(origin, f"layouts.{key} must be a non-empty list of strings, got {values!r:.80}")
        out[key] = tuple(str(v) for v in values)
    for t in out.get("templates", ()):
        if "{question}" not in t or "{options}" not in t or set(re.findall(r"{(\w+)}", t)) - PLACEHOLDERS:
            raise _fail(origin, f"layouts.templates: {t!r} must contain {{question}} and {{options}} and only {sorted(PLACEHOLDERS)}")
    for f in out.get("option_formats", ()):
        if "{number}" not in f or "{label}" not in f:
            raise _fail(origin, f"layouts.option_formats: {f!r} must contain {{number}} and {{label}}")
    return out


def load_survey(name_or_path: str | Path = "vsm13") -> Survey:
    """Load and validate a survey definition (built-in name or YAML path).

    `NAME@k` is paraphrase k (1-based) of NAME's items, e.g. `vsm13@5`: how a held-out wording of
    the same layout is named on the command line (`--survey.heldout vsm13@5`).
    """
    spec = str(name_or_path)
    wording = re.fullmatch(r"(.+)@(\d+)", spec)
    if wording and not Path(spec).expanduser().is_file():
        k = int(wording.group(2))
        if k < 1:
            raise CulturalignError(f"survey wording {spec!r}: paraphrase numbers start at 1, e.g. vsm13@1")
        return load_survey(wording.group(1)).with_paraphrase(k - 1)
    data, origin = _read(name_or_path)
    framework = str(data.get("framework", data.get("name", "custom")))
    base: dict[str, Any] = {}
    if framework in BUILTIN and origin != f"builtin:{framework}":
        base, _ = _read(framework)
    merged = {**{k: v for k, v in base.items() if k not in SPLIT_KEYS}, **{k: v for k, v in data.items() if v is not None}}
    for key in ("items", "scales", "formulas"):
        if key not in merged:
            raise _fail(origin, f"missing key {key!r}; add it or set `framework: vsm13` to inherit it")

    scales = _parse_scales(merged["scales"], origin)
    sizes = {len(v) for v in scales.values()}
    items = _parse_items(merged["items"], scales, origin)
    if base and len(items) != len(base["items"]):
        raise _fail(origin, f"has {len(items)} items but framework {framework!r} has {len(base['items'])}; give all of them")
    base_scales = base.get("scales")
    if base_scales and len(next(iter(base_scales.values()))) != len(next(iter(scales.values()))):
        want, got = len(next(iter(base_scales.values()))), len(next(iter(scales.values())))
        raise _fail(origin, f"scales have {got} labels but framework {framework!r} has {want}; give {want} labels per scale")
    formulas = _parse_formulas(merged["formulas"], len(items), origin)

    template = str(merged.get("template", "{question}\n{options}\n{instruction}"))
    unknown = set(re.findall(r"{(\w+)}", template)) - PLACEHOLDERS
    if unknown or "{question}" not in template or "{options}" not in template:
        raise _fail(origin, f"template must contain {{question}} and {{options}} and only {sorted(PLACEHOLDERS)}, got {template!r}")
    for key in ("cloze_option_format", "option_format"):
        if key in merged and "{label}" not in str(merged[key]):
            raise _fail(origin, f"{key} must contain {{label}}, got {merged[key]!r}")
    return Survey(
        layouts=_layout_options(origin, merged.get("layouts") or {}),
        **_splits(origin, merged, min((len(it.paraphrases) for it in items), default=0)),
        name=str(merged.get("name", Path(origin).stem)),
        framework=framework,
        template=template,
        option_format=str(merged.get("option_format", "{number}. {label}")),
        instruction=str(merged.get("instruction", f"Answer with a single number from 1 to {next(iter(sizes))}.")),
        scales=scales,
        items=tuple(items),
        formulas=formulas,
        cloze_option_format=str(merged.get("cloze_option_format", DEFAULT_CLOZE_OPTION_FORMAT)),
        cloze_instruction=str(merged.get("cloze_instruction", DEFAULT_CLOZE_INSTRUCTION)),
        description=str(merged.get("description", "")),
        source=str(merged.get("source", "")),
        origin=origin,
    )


def _splits(origin: str, merged: dict[str, Any], n_paraphrases: int) -> dict[str, Any]:
    """The optional `split:` (every wording) and `splits:` (per wording) keys, checked."""
    split, splits = merged.get("split"), merged.get("splits") or {}
    wordings = ["base", *(f"paraphrase{k}" for k in range(1, n_paraphrases + 1))]
    if split is not None and split not in SPLITS:
        raise _fail(origin, f"`split: {split}` is not one of {list(SPLITS)}; see docs/robustness.md")
    if not isinstance(splits, dict):
        raise _fail(origin, f"`splits` must map a wording ({', '.join(wordings[:3])}, ...) to one of {list(SPLITS)}, got {splits!r:.80}")
    for wording, name in splits.items():
        if wording not in wordings or name not in SPLITS:
            raise _fail(origin, f"`splits: {{{wording}: {name}}}`: wording must be one of {wordings}, split one of {list(SPLITS)}")
    return {"split": split, "splits": {str(k): str(v) for k, v in splits.items()}}


def _parse_scales(scales_raw: Any, origin: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(scales_raw, dict) or not scales_raw:
        raise _fail(origin, "`scales` must map a scale name to its list of answer labels")
    scales = {str(k): tuple(str(x) for x in v) for k, v in scales_raw.items()}
    sizes = {len(v) for v in scales.values()}
    if len(sizes) != 1 or not 2 <= next(iter(sizes)) <= 9:
        bad = {k: len(v) for k, v in scales.items()}
        raise _fail(origin, f"every scale needs the same number (2..9) of labels, got {bad}; VSM13 scales have 5")
    return scales


def _parse_items(items_raw: Any, scales: dict[str, tuple[str, ...]], origin: str) -> list[Item]:
    if not isinstance(items_raw, list):
        raise _fail(origin, "`items` must be a list of {id, text, scale}")
    items: list[Item] = []
    for n, raw in enumerate(items_raw, start=1):
        if not isinstance(raw, dict) or "id" not in raw or "text" not in raw or "scale" not in raw:
            raise _fail(origin, f"item #{n} needs keys id, text and scale, got {raw!r:.80}")
        if raw["scale"] not in scales:
            raise _fail(origin, f"item {raw['id']} uses scale {raw['scale']!r}, not one of {sorted(scales)}")
        items.append(
            Item(
                int(raw["id"]),
                str(raw["text"]).strip(),
                str(raw["scale"]),
                str(raw.get("intro", "")).strip(),
                tuple(str(p).strip() for p in raw.get("paraphrases", []) or []),
            )
        )
    ids = [it.id for it in items]
    if ids != list(range(1, len(items) + 1)):
        raise _fail(origin, f"item ids must be 1..{len(items)} in order, got {ids}")
    return items


def _parse_formulas(raw: Any, n_items: int, origin: str) -> dict[str, tuple[tuple[float, int, int], ...]]:
    formulas: dict[str, tuple[tuple[float, int, int], ...]] = {}
    for dim, terms in (raw or {}).items():
        try:
            formulas[str(dim)] = tuple((float(w), int(a), int(b)) for w, a, b in terms)
        except (TypeError, ValueError) as err:
            raise _fail(origin, f"formula {dim} must be a list of [weight, plus_item, minus_item], got {terms!r}") from err
        for _, a, b in formulas[str(dim)]:
            if not (1 <= a <= n_items and 1 <= b <= n_items):
                raise _fail(origin, f"formula {dim} names item {a if not 1 <= a <= n_items else b}, outside 1..{n_items}")
    if not formulas:
        raise _fail(origin, "`formulas` is empty; give at least one dimension")
    return formulas

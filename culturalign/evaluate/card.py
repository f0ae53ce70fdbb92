"""The robustness report card (`culturalign evaluate --card.enabled true`): does a prompt hold off
the questionnaire it was fitted to, in each answer order, over seeds?

Splits (issue 17): **train** = the wordings a run's meta.json records it was trained on (baselines:
the base survey); **development** = `--card.development` wordings plus N layouts from the
development seed range (10000-19999); **test** = `--card.test` wordings (`vsm13_blocks`) plus N
layouts from the test range (20000+). Layouts are the base survey rendered by
`culturalign.survey.layouts`. `--card.read_test false` gives a **development card**, the one to
make choices on: the test split is not asked at all, and the rank, answer positions and format
noise are read on the development split instead. Every wording is asked in both answer orders; each
order is also read alone, so a prompt whose orders err in opposite directions and only average out
is visible.

A split's loss is the mean over its parts (each wording file is one part, the split's layouts
together are one part) of the mean loss over the part's wordings; its ratio is that loss over the
no-prompt model's loss on the same wordings in the same reading.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from culturalign.errors import CulturalignError
from culturalign.evaluate.candidates import Candidate
from culturalign.evaluate.card_stats import group_settings, interval, rank_of_target, ranked_countries, spread
from culturalign.evaluate.generalisation import Administer, Wording, losses
from culturalign.evaluate.position import histogram
from culturalign.survey.definition import Survey, load_survey
from culturalign.survey.layouts import Layout, apply, check_no_overlap, layout_from_seed, layout_split, sample_layouts
from culturalign.survey.scoring import Scoring
from culturalign.targets import DIMENSIONS, Target, load_table

READINGS = ("both", "forward", "reverse")


@dataclass
class CardArgs:
    """Robustness report card: ratios to no prompt per split and answer order, over seeds."""

    enabled: bool = False
    """Add the card to the report (asks every prompt ~2 x (train + development + test) wordings more)."""
    development: list[str] = field(default_factory=lambda: ["vsm13@4", "vsm13@5"])
    """Development wordings (built-in name, file or NAME@k): what choices are made on."""
    development_layouts: int = 8
    """Layouts of the base survey in the development split."""
    development_seed: int = 10_000
    """First development layout's seed (10000-19999)."""
    test: list[str] = field(default_factory=lambda: ["vsm13_blocks"])
    """Test wordings: never chosen on, read once for the report."""
    test_layouts: int = 8
    """Layouts of the base survey in the test split (also the format-noise sample)."""
    test_seed: int = 20_000
    """First test layout's seed (20000 and above)."""
    train: list[str] | None = None
    """Train-split wordings for every prompt; default: each run's own (its meta.json), baselines the base survey."""
    settings: dict[str, list[str]] = field(default_factory=dict)
    """Seeds of one setting named explicitly, {label: [run dirs]}; other runs group by config.yaml minus seeds."""
    read_test: bool = True
    """false: a development card, to choose on: the test split is never asked (`test`, `test_layouts` unused)."""

    def __post_init__(self) -> None:
        for split, n, seed in (
            ("development", self.development_layouts, self.development_seed),
            ("test", self.test_layouts, self.test_seed),
        ):
            if n < 0:
                raise CulturalignError(f"--card.{split}_layouts={n}; give a number of layouts >= 0")
            if n and not (layout_split(seed) == layout_split(seed + n - 1) == split):
                raise CulturalignError(
                    f"--card.{split}_seed={seed} with {n} layouts leaves the {split} seed range; "
                    "use development 10000-19999 or test 20000+ with all layouts inside it"
                )
        for name in ("development", "test"):
            if not all(isinstance(w, str) and w.strip() for w in getattr(self, name)):
                raise CulturalignError(f"--card.{name}={getattr(self, name)} holds an empty wording name; give built-in names or files")


@dataclass(frozen=True)
class Part:
    """Wordings reported together: one wording file, or a split's layouts. (label, survey) each."""

    name: str
    wordings: tuple[tuple[str, Survey], ...]
    layouts: tuple[Layout, ...] = ()


def _wording(name: str, base: Survey, option: str) -> Survey:
    survey = load_survey(name)
    if survey.formulas != base.formulas or len(survey.items) != len(base.items):
        raise CulturalignError(f"{option} has {name!r}, which is not a wording of the base survey {base.origin} (other items or formulas)")
    return survey


def _layout_part(base: Survey, n: int, seed: int) -> list[Part]:
    layouts = sample_layouts(n, seed, base)
    if not layouts:
        return []
    wordings = tuple((f"layout {L.seed}", apply(base, L)) for L in layouts)
    return [Part(f"layouts {seed}-{seed + n - 1}", wordings, tuple(layouts))]


def build_splits(args: CardArgs, base_name: str) -> dict[str, list[Part]]:
    """The development and test parts every prompt is read on (train depends on the prompt)."""
    base = load_survey(base_name)
    out = {
        "development": [Part(n, ((n, _wording(n, base, "--card.development")),)) for n in args.development]
        + _layout_part(base, args.development_layouts, args.development_seed),
    }
    if not out["development"]:  # every prompt and the neutral respondent are read on it; an empty split has no mean
        only = " (--card.read_test false: it is all the card reads)" if not args.read_test else ""
        raise CulturalignError(f"--card.development is empty and --card.development_layouts is 0{only}; the card needs a development split")
    if not args.read_test:
        return out
    out["test"] = [Part(n, ((n, _wording(n, base, "--card.test")),)) for n in args.test] + _layout_part(
        base, args.test_layouts, args.test_seed
    )
    dev = {w: s for p in out["development"] if not p.layouts for w, s in p.wordings}
    for p in out["test"]:
        for w, s in p.wordings if not p.layouts else ():
            if shared := [d for d, o in dev.items() if {i.text for i in o.items} & {i.text for i in s.items}]:
                raise CulturalignError(
                    f"test wording {w!r} shares items with development wording {shared[0]!r}; a test wording is never chosen on"
                )
    if not out["test"]:
        raise CulturalignError("--card.test is empty and --card.test_layouts is 0; the card needs a test split")
    return out


_WORDING = re.compile(r"(?:base|paraphrase(\d+))?(?:\+layout(\d+))?")


def from_record(record: str) -> tuple[str, Survey, Layout | None]:
    """A wording as meta.json's `survey` list records it (`builtin:vsm13#paraphrase1`, `FILE#base+layout5`)
    rebuilt: (label, survey, layout or None)."""
    origin, hash_, wording = record.rpartition("#")
    if not hash_ or not (m := _WORDING.fullmatch(wording)):
        origin, wording, m = record, "", _WORDING.fullmatch("")
    name = origin.removeprefix("builtin:")
    survey = load_survey(name)
    label = name
    if m and m.group(1):
        survey, label = survey.with_paraphrase(int(m.group(1)) - 1), f"{name}@{m.group(1)}"
    layout = None
    if m and m.group(2):
        layout = layout_from_seed(int(m.group(2)), survey)
        survey, label = apply(survey, layout), f"{label}+layout{layout.seed}"
    return label, survey, layout


def train_part(cand: Candidate, args: CardArgs, base_name: str) -> Part:
    """The wordings a prompt was trained on: --card.train, else the run's meta.json, else the base survey."""
    records = cand.info.get("trained_survey") if cand.kind == "run" else None
    if args.train is not None or not records:
        names = args.train if args.train is not None else [base_name]
        return Part("train", tuple((n, load_survey(n)) for n in names))
    try:
        rebuilt = [from_record(r) for r in records]
    except CulturalignError as err:
        raise CulturalignError(f"{cand.run_dir}/meta.json: {err}; or pass the training wordings as --card.train [NAME,...]") from None
    return Part("train", tuple((lab, s) for lab, s, _ in rebuilt), tuple(L for _, _, L in rebuilt if L is not None))


def refuse_trained(label: str, trained: Part, splits: dict[str, list[Part]]) -> None:
    """Nothing a prompt was trained on is reported as development or test: same sentences (wordings)
    or the same layout (seed or rendering)."""
    texts = {w: {i.text for i in s.items} for w, s in trained.wordings}
    for split, parts in splits.items():
        for part in parts:
            if part.layouts:
                check_no_overlap(trained.layouts, part.layouts, f"{split} for {label}")
                continue
            for name, survey in part.wordings:
                if hit := [w for w, t in texts.items() if t & {i.text for i in survey.items}]:
                    raise CulturalignError(
                        f"{label} was trained on {hit[0]!r}, which shares items with the {split} wording {name!r}; "
                        f"drop {name!r} from --card.{split} or leave this run out"
                    )


class Reader:
    """Each (prompt, wording) asked once in each answer order through the one survey fitness."""

    def __init__(self, ask: Administer) -> None:
        self.ask = ask
        self.cache: dict[tuple[str, str], dict[str, Any]] = {}

    def __call__(self, cand: Candidate, label: str, survey: Survey) -> dict[str, Any]:
        """{forward, reverse, both: {dim: index}, distributions: [(1, I, K) as asked], failed}."""
        key = (cand.label, label)
        if key not in self.cache:
            out: dict[str, Any] = {"distributions": [], "failed": False}
            for order, rev in (("forward", False), ("reverse", True)):
                if rev and self.ask.answering.style == "bare":
                    # The question alone lists no labels: the reverse order renders the same text and scores the
                    # same label texts, so its answers are the forward ones and its distribution, as asked (labels
                    # counted from the other pole), the forward one turned round. Asking again only doubled the cost.
                    out["reverse"] = out["forward"]
                    out["distributions"].append(out["distributions"][0].flip(-1))
                    continue
                # forward lists every scale from its first pole, reverse from its last, whatever the layout drew.
                res = self.ask(cand, Wording(f"card: {label} [{order}]", replace(survey, reverse_order=rev)))
                out[order] = res["indices"]
                out["distributions"].append(res["distributions"])
                out["failed"] |= res["failed"]
                out["constants"] = res["constants"]
            # Indices are linear in the answers: their mean is the index of the mean answers (what debias reads).
            out["both"] = {d: (out["forward"][d] + out["reverse"][d]) / 2 for d in out["forward"]}
            self.cache[key] = out
        return self.cache[key]


def _mean(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    return {d: sum(r[d] for r in rows) / len(rows) for d in rows[0]}


def split_reading(reader: Reader, cand: Candidate, parts: Sequence[Part], target: Target, scoring: Scoring) -> dict[str, Any]:
    """One prompt on one split for one target: loss per reading (mean over parts of the mean over each
    part's wordings), the same per part, and the split's indices (same averaging) per reading."""
    kind = scoring.loss
    per_part: dict[str, dict[str, float]] = {}
    part_idx: dict[str, list[dict[str, float]]] = {r: [] for r in READINGS}
    for part in parts:
        reads = [reader(cand, label, survey) for label, survey in part.wordings]
        per_part[part.name] = {r: sum(losses(x[r], target, scoring)[kind] for x in reads) / len(reads) for r in READINGS}
        for r in READINGS:
            part_idx[r].append(_mean([x[r] for x in reads]))
    return {
        "loss": {r: sum(p[r] for p in per_part.values()) / len(per_part) for r in READINGS},
        "parts": per_part,
        "indices": {r: _mean(part_idx[r]) for r in READINGS},
    }


def read_on(splits: dict[str, Any]) -> str:
    """The split the rank, answer positions and format noise are read on: test, unless the card is
    a development card (`--card.read_test false`) and has none."""
    return "test" if "test" in splits else "development"


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def prompt_card(
    reader: Reader,
    cand: Candidate,
    none: Candidate,
    splits: dict[str, list[Part]],
    targets: Sequence[Target],
    scoring: Scoring,
    countries: dict[str, list[Target]],
) -> dict[str, Any]:
    """One prompt's card: per target and split, loss and no-prompt loss per reading and their ratio
    (also per part); the target's rank among countries per split and reading; the answer positions
    of the split the card is read on (`read_on`); every wording's indices per reading."""
    rec: dict[str, Any] = {"label": cand.label, "kind": cand.kind, "train": [w for w, _ in splits["train"][0].wordings], "targets": {}}
    constants: dict[str, float] = {}
    for tg in targets:
        key = tg.iso3 or tg.name
        out: dict[str, Any] = {"rank": {}}
        for split in splits:
            mine, base = (split_reading(reader, c, splits[split], tg, scoring) for c in (cand, none))
            constants = reader(cand, *splits[split][0].wordings[0])["constants"]
            out[split] = {
                "loss": mine["loss"],
                "no_prompt": base["loss"],
                "ratio": {r: _ratio(mine["loss"][r], base["loss"][r]) for r in READINGS},
                "parts": {p: {r: _ratio(v[r], base["parts"][p][r]) for r in READINGS} for p, v in mine["parts"].items()},
                "indices": mine["indices"],
                # A respondent giving every answer equally (every index at C) on the same wordings.
                "neutral": {r: _ratio(losses(constants, tg, scoring)[scoring.loss], base["loss"][r]) for r in READINGS},
            }
            out["rank"][split] = {r: rank_of_target(mine["indices"][r], constants, tg, countries[key]) for r in READINGS}
        rec["targets"][key] = out
    tests = [reader(cand, label, survey) for part in splits[read_on(splits)] for label, survey in part.wordings]
    rec["position"] = histogram([d for x in tests for d in x["distributions"]])
    rec["failed"] = any(x["failed"] for x in tests)
    rec["readings"] = {
        label: {r: {d: round(v, 3) for d, v in reader(cand, label, s)[r].items()} for r in READINGS}
        for split in splits
        for part in splits[split]
        for label, s in part.wordings
    }
    return rec


def setting_summary(group: dict[str, Any], prompts: dict[str, dict[str, Any]], split_names: Sequence[str], ranked: str) -> dict[str, Any]:
    """Mean and 95% t-interval over a setting's seeds of every split's ratio in every reading, and of
    the target's rank (C-free reading, split `ranked`, both orders)."""
    members = [prompts[label] for label in group["prompts"]]
    out: dict[str, Any] = {"label": group["label"], "prompts": group["prompts"], "n": len(members), "targets": {}}
    for key in members[0]["targets"]:
        per = {split: {r: interval([m["targets"][key][split]["ratio"][r] for m in members]) for r in READINGS} for split in split_names}
        ranks = [m["targets"][key]["rank"][ranked]["both"]["centred"] for m in members]
        per["rank"] = {**interval(ranks), "values": ranks}
        out["targets"][key] = per
    return out


def neutral_respondent(
    constants: dict[str, float], targets: Sequence[Target], scoring: Scoring, countries: dict[str, list[Target]]
) -> dict[str, Any]:
    """The respondent who gives every answer equally: every index at its constant C, in every
    wording and reading. Its loss, and its ratio to no prompt (each prompt's `neutral` per split), is
    what a prompt reaches by flattening the model's answers without learning anything of the
    culture: a prompt at or above it has not aligned the model. Its rank is the target's among the
    countries for a model that says nothing."""
    return {
        tg.iso3 or tg.name: {
            "loss": losses(constants, tg, scoring)[scoring.loss],
            "rank": rank_of_target(constants, constants, tg, countries[tg.iso3 or tg.name]),
        }
        for tg in targets
    }


def format_noise(reader: Reader, none: Candidate, parts: Sequence[Part], source: str) -> dict[str, Any]:
    """Format noise beside signal: the spread of the bare model's indices across the layouts of
    `parts` (the split the card is read on; per reading) and the spread of the real countries'
    scores (table `source`, no regions, every dimension present). Population standard deviations,
    as `culturalign survey --layouts` reports."""
    layouts = [(label, s) for p in parts if p.layouts for label, s in p.wordings]
    noise = {r: spread([reader(none, label, s)[r] for label, s in layouts]) for r in READINGS}
    table = [t.scores for t in load_table(source) if not (t.iso3 or "X").startswith("X") and all(d in t.scores for d in DIMENSIONS)]
    signal = spread(table)
    ratio = None if noise["both"]["mean"] is None else noise["both"]["mean"] / signal["mean"]
    return {"layouts": len(layouts), "noise": noise, "signal": {**signal, "source": source}, "noise_over_signal": ratio}


def train_parts(candidates: Sequence[Candidate], args: CardArgs, base_name: str, splits: dict[str, list[Part]]) -> dict[str, Part]:
    """Each prompt's train split, refused when a run was trained on a development or test wording
    or layout (checked before any prompt is asked anything)."""
    out = {}
    for cand in candidates:
        out[cand.label] = train_part(cand, args, base_name)
        if cand.kind == "run":
            refuse_trained(cand.label, out[cand.label], splits)
    return out


def robustness_card(
    candidates: Sequence[Candidate],
    ask: Administer,
    args: CardArgs,
    splits: dict[str, list[Part]],
    trains: dict[str, Part],
    targets: Sequence[Target],
    scoring: Scoring,
    source: str,
) -> dict[str, Any]:
    """The card for every prompt, every setting (seeds grouped) and the format noise. `ask` must read
    one answer order at a time (answering.debias off): the card asks both orders itself."""
    if ask.answering.debias:
        raise CulturalignError("the report card reads each answer order itself; give it an Administer with answering.debias false")
    none = next((c for c in candidates if c.info.get("baseline") == "none"), Candidate("no prompt", "baseline", info={"baseline": "none"}))
    reader = Reader(ask)
    countries = {tg.iso3 or tg.name: ranked_countries(tg, source) for tg in targets}
    prompts = {
        c.label: prompt_card(reader, c, none, {"train": [trains[c.label]], **splits}, targets, scoring, countries) for c in candidates
    }
    groups = group_settings([(c.label, c.kind, c.run_dir) for c in candidates], args.settings)
    for g in groups:
        for label in g["prompts"]:
            prompts[label]["setting"] = g["label"]
    on = read_on(splits)
    constants = reader(none, *splits["development"][0].wordings[0])["constants"]
    return {
        "loss_kind": scoring.loss,
        "readings": list(READINGS),
        "splits": {split: [{"name": p.name, "wordings": [w for w, _ in p.wordings]} for p in parts] for split, parts in splits.items()},
        "read_on": on,
        "countries": {key: len(c) for key, c in countries.items()},
        "prompts": list(prompts.values()),
        "settings": [setting_summary(g, prompts, ("train", *splits), on) for g in groups],
        "format": format_noise(reader, none, splits[on], source),
        "neutral": neutral_respondent(constants, targets, scoring, countries),
    }

"""Country targets: Hofstede scores a soft prompt is aligned to.

The scores live in ``countries.csv`` next to this module (built by ``build_table.py``, which cites
the sources). ``resolve_target`` turns whatever a user typed -- an ISO-3 code, a country name, six
numbers, or a partial dict -- into one :class:`Target`, and fails with a one-line
:class:`~culturalign.errors.CulturalignError` that names the bad value and the fix.
"""

from __future__ import annotations

import csv
import difflib
import functools
import importlib.resources
import math
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from culturalign.errors import CulturalignError

DIMENSIONS = ("PDI", "IDV", "MAS", "UAI", "LTO", "IVR")
SOURCES = ("insights2021", "hofstede2015")

# Published scores run 0..112 (Greece UAI, 2015); a little headroom above that still catches typos
# such as 720 for 72 while allowing custom targets a bit beyond the observed range.
SCORE_MIN, SCORE_MAX = 0.0, 150.0

_EXAMPLE = "72,48,43,64,27,14"  # Saudi Arabia, insights2021: shown in messages as the numeric form
_HINT = "see `culturalign targets` for the list"

# Common ways of naming a country that differ from the canonical name in countries.csv.
# Also covers the 2015 matrix's own spellings ("U.S.A.", "Korea South", "Czech Rep").
ALIASES: dict[str, str] = {
    "us": "USA",
    "u.s.": "USA",
    "u.s.a.": "USA",
    "america": "USA",
    "united states of america": "USA",
    "uk": "GBR",
    "u.k.": "GBR",
    "great britain": "GBR",
    "britain": "GBR",
    "england": "GBR",
    "korea": "KOR",
    "korea south": "KOR",
    "republic of korea": "KOR",
    "south korea": "KOR",
    "czechia": "CZE",
    "czech rep": "CZE",
    "slovak republic": "SVK",
    "slovak rep": "SVK",
    "russian federation": "RUS",
    "iran, islamic republic of": "IRN",
    "viet nam": "VNM",
    "uae": "ARE",
    "emirates": "ARE",
    "holland": "NLD",
    "the netherlands": "NLD",
    "macedonia": "MKD",
    "macedonia rep": "MKD",
    "bosnia": "BIH",
    "turkiye": "TUR",
    "cabo verde": "CPV",
    "kyrgyz republic": "KGZ",
    "kyrgyz rep": "KGZ",
    "dominican rep": "DOM",
    "ksa": "SAU",
    "kingdom of saudi arabia": "SAU",
    "arab world": "XARA",
    "belgium netherl": "XBEN",
    "belgium flemish": "XBEN",
    "taiwan, province of china": "TWN",
    "hong kong sar": "HKG",
}


@dataclass(frozen=True)
class Target:
    """Scores to align to. ``scores`` holds only the dimensions the source publishes."""

    name: str  # canonical country name, or "custom"
    iso3: str | None  # ISO 3166-1 alpha-3 (X... for regions); None for custom targets
    source: str  # "insights2021" | "hofstede2015" | "custom"
    # A dict is unhashable; leaving it out of the hash keeps Target usable as a dict key.
    scores: dict[str, float] = field(hash=False)


# How a target reads inside "You are a person from ___.": the table's names are index keys
# ("United States", "Africa East"), not running English. Countries whose English name takes an
# article, and the 2015 matrix's regions, which are word-order keys, get their phrase here.
PHRASES: dict[str, str] = {
    "USA": "the United States",
    "GBR": "the United Kingdom",
    "ARE": "the United Arab Emirates",
    "NLD": "the Netherlands",
    "CZE": "the Czech Republic",
    "DOM": "the Dominican Republic",
    "PHL": "the Philippines",
    "XARA": "the Arab countries",
    "XAFE": "East Africa",
    "XAFW": "West Africa",
    "XBEF": "French-speaking Belgium",
    "XBEN": "Dutch-speaking Belgium",
    "XCAF": "French-speaking Canada",
    "XGEE": "East Germany",
    "XSAW": "South Africa (white population)",
    "XSWF": "French-speaking Switzerland",
    "XSWG": "German-speaking Switzerland",
}
# A custom target (six numbers) names no country, so its persona names none either: borrowing a
# country's name would start the search next to a culture the user did not ask for.
CUSTOM_PERSONA = "You are a person answering a survey about your values."


def persona(target: Target) -> str:
    """The default init text and hard-prompt persona for a target: 'You are a person from <country>.'"""
    if target.iso3 is None:
        return CUSTOM_PERSONA
    return f"You are a person from {PHRASES.get(target.iso3, target.name)}."


def _fold(text: str) -> str:
    """Case- and accent-insensitive key, so "sao tome and principe" finds "São Tomé and Príncipe"."""
    decomposed = unicodedata.normalize("NFKD", text.strip())
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).casefold().split())


def _check_source(source: str) -> None:
    if source not in SOURCES:
        raise CulturalignError(f"unknown target source {source!r}; use one of: {', '.join(SOURCES)}")


@functools.lru_cache(maxsize=None)
def _rows() -> tuple[tuple[str, str, str, dict[str, float]], ...]:
    """All rows of countries.csv as (source, iso3, name, scores); read once per process."""
    text = importlib.resources.files("culturalign.targets").joinpath("countries.csv").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    out = []
    for rec in csv.DictReader(lines):
        scores = {d: float(rec[d]) for d in DIMENSIONS if rec[d].strip()}
        out.append((rec["source"], rec["iso3"], rec["name"], scores))
    return tuple(out)


def load_table(source: str = "insights2021") -> list[Target]:
    """Every country (and region) of one source, in table order (by name)."""
    _check_source(source)
    # Fresh dicts each call: a caller mutating scores must not corrupt the cached table.
    return [Target(name, iso, src, dict(scores)) for src, iso, name, scores in _rows() if src == source]


def list_countries(source: str = "insights2021") -> list[tuple[str, str]]:
    """(iso3, name) pairs of one source, sorted by name."""
    return sorted(((t.iso3 or "", t.name) for t in load_table(source)), key=lambda p: p[1])


def _lookup_keys() -> dict[str, str]:
    """Folded ISO-3 code / name / alias -> ISO-3, across both sources."""
    keys: dict[str, str] = {}
    for _, iso, name, _ in _rows():
        keys[_fold(iso)] = iso
        keys[_fold(name)] = iso
    for alias, iso in ALIASES.items():
        keys.setdefault(_fold(alias), iso)
    return keys


def _check_score(dim: str, value: object) -> float:
    # bool is an int subclass; True as a score is certainly a mistake. Anything else float()
    # accepts (numpy scalars, 0-d tensors, numeric strings) is fine.
    if isinstance(value, bool):
        raise CulturalignError(f"score for {dim} must be a number, got {value!r}; e.g. {_EXAMPLE}")
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise CulturalignError(f"score for {dim} must be a number, got {value!r}; e.g. {_EXAMPLE}") from None
    if not math.isfinite(number) or not SCORE_MIN <= number <= SCORE_MAX:
        raise CulturalignError(f"score for {dim} is {value!r}; Hofstede scores must be finite and within {SCORE_MIN:g}..{SCORE_MAX:g}")
    return number


def _custom_from_numbers(values: Iterable[object]) -> Target:
    values = list(values)
    if len(values) != len(DIMENSIONS):
        raise CulturalignError(
            f"expected {len(DIMENSIONS)} scores ({','.join(DIMENSIONS)}), got {len(values)}: {values!r}; "
            f"e.g. {_EXAMPLE}, or give a subset as PDI=72,UAI=64"
        )
    return Target("custom", None, "custom", {d: _check_score(d, v) for d, v in zip(DIMENSIONS, values)})


def _custom_from_mapping(mapping: Mapping[object, object]) -> Target:
    if not mapping:
        raise CulturalignError(f"empty score mapping; give at least one of {', '.join(DIMENSIONS)}")
    scores: dict[str, float] = {}
    for key, value in mapping.items():
        dim = str(key).strip().upper()
        if dim not in DIMENSIONS:
            raise CulturalignError(f"unknown dimension {key!r}; use one of: {', '.join(DIMENSIONS)}")
        scores[dim] = _check_score(dim, value)
    # Keep the canonical dimension order whatever order the user typed.
    return Target("custom", None, "custom", {d: scores[d] for d in DIMENSIONS if d in scores})


def _parse_string(text: str) -> Target | None:
    """Numeric string forms: "72,48,43,64,27,14" or "PDI=72,UAI=64". None means "a country name"."""
    stripped = text.strip()
    if "=" in stripped:
        pairs = {}
        for part in filter(None, (p.strip() for p in stripped.split(","))):
            key, sep, value = part.partition("=")
            if not sep:
                raise CulturalignError(f"cannot read {part!r} in {text!r}; write subsets as PDI=72,UAI=64")
            pairs[key] = value.strip()
        return _custom_from_mapping(pairs)
    # Country names never start with a digit or sign; numbers always do (".5" included).
    if stripped[:1].isdigit() or stripped[:1] in "+-.":
        return _custom_from_numbers(p.strip() for p in stripped.split(","))
    return None


def _from_table(country: str, source: str) -> Target:
    key = _fold(country)
    keys = _lookup_keys()
    iso = keys.get(key)
    if iso is None:
        names = {name for _, _, name, _ in _rows()}
        # Match against names and aliases, then show canonical names only.
        candidates = {_fold(n): n for n in names}
        candidates.update({_fold(a): next(n for _, i, n, _ in _rows() if i == v) for a, v in ALIASES.items()})
        close = difflib.get_close_matches(key, list(candidates), n=3, cutoff=0.6)
        suggestion = ", ".join(dict.fromkeys(candidates[c] for c in close))
        hint = f"did you mean: {suggestion}? " if suggestion else ""
        raise CulturalignError(f"unknown country {country!r}; {hint}{_HINT}, or pass six scores like {_EXAMPLE}")
    for target in load_table(source):
        if target.iso3 == iso:
            if not target.scores:
                break
            return target
    others = [s for s in SOURCES if s != source and any(t.iso3 == iso and t.scores for t in load_table(s))]
    fix = f"choose source {others[0]!r}" if others else "pass six scores instead"
    raise CulturalignError(f"{country!r} has no scores in source {source!r}; {fix} ({_HINT})")


def resolve_target(
    country: str | Sequence[float] | Mapping[str, float] = "SAU",
    source: str = "insights2021",
) -> Target:
    """Turn a country code/name, six numbers, or a dimension->score mapping into a Target.

    Accepted forms: ``"SAU"``/``"sau"``, ``"Saudi Arabia"``, aliases (``"USA"``, ``"UK"``,
    ``"Korea"``), ``[72, 48, 43, 64, 27, 14]``, ``"72,48,43,64,27,14"``, ``{"PDI": 72, "UAI": 64}``,
    ``"PDI=72,UAI=64"``. Numeric and mapping forms give ``source == "custom"``.
    """
    _check_source(source)  # checked first so a typo in the source is reported even for custom scores
    if isinstance(country, Target):
        return country
    if isinstance(country, Mapping):
        return _custom_from_mapping(country)
    if isinstance(country, str):
        if not country.strip():
            raise CulturalignError(f"empty target; give a country such as SAU, {_HINT}, or six scores like {_EXAMPLE}")
        parsed = _parse_string(country)
        return parsed if parsed is not None else _from_table(country, source)
    if isinstance(country, Iterable):  # lists, tuples, numpy arrays, tensors
        return _custom_from_numbers(country)
    raise CulturalignError(
        f"cannot use {country!r} as a target; give a country such as SAU, six scores like {_EXAMPLE}, or a mapping like {{'PDI': 72}}"
    )

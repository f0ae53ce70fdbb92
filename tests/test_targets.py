"""Country targets: the shipped table and resolve_target's accepted forms and errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from culturalign.errors import CulturalignError
from culturalign.targets import DIMENSIONS, SOURCES, Target, list_countries, load_table, persona, resolve_target
from culturalign.targets.table import CUSTOM_PERSONA, PHRASES

SAUDI_2021 = dict(zip(DIMENSIONS, (72.0, 48.0, 43.0, 64.0, 27.0, 14.0)))
USA_2015 = dict(zip(DIMENSIONS, (40.0, 91.0, 62.0, 46.0, 26.0, 68.0)))


def test_default_is_saudi_arabia_insights2021() -> None:
    t = resolve_target()
    assert t == Target("Saudi Arabia", "SAU", "insights2021", SAUDI_2021)


@pytest.mark.parametrize("query", ["SAU", "sau", "Saudi Arabia", "saudi arabia", "  SAUDI ARABIA ", "KSA"])
def test_iso_name_and_alias_resolve_to_same_country(query: str) -> None:
    assert resolve_target(query).scores == SAUDI_2021


@pytest.mark.parametrize(
    "query, iso3, name",
    [
        ("USA", "USA", "United States"),
        ("US", "USA", "United States"),
        ("u.s.a.", "USA", "United States"),
        ("UK", "GBR", "United Kingdom"),
        ("Great Britain", "GBR", "United Kingdom"),
        ("Korea", "KOR", "South Korea"),
        ("czechia", "CZE", "Czech Republic"),
        ("Sao Tome and Principe", "STP", "São Tomé and Príncipe"),
    ],
)
def test_aliases(query: str, iso3: str, name: str) -> None:
    t = resolve_target(query)
    assert (t.iso3, t.name, t.source) == (iso3, name, "insights2021")


def test_hofstede2015_source() -> None:
    t = resolve_target("United States", source="hofstede2015")
    assert (t.iso3, t.source, t.scores) == ("USA", "hofstede2015", USA_2015)
    # The 2015 matrix publishes only LTO and IVR for Saudi Arabia: missing dimensions are omitted.
    assert resolve_target("SAU", source="hofstede2015").scores == {"LTO": 36.0, "IVR": 52.0}


def test_2015_regions_and_code_collisions() -> None:
    arab = resolve_target("XARA", source="hofstede2015")
    assert arab.name == "Arab Countries" and arab.scores["PDI"] == 80
    # The 2015 matrix's own "SLV" means Slovenia; in our table SLV is ISO (El Salvador).
    assert resolve_target("SLV", source="hofstede2015").name == "El Salvador"
    assert resolve_target("Slovenia", source="hofstede2015").iso3 == "SVN"


def test_country_missing_from_source_names_other_source() -> None:
    with pytest.raises(CulturalignError, match="hofstede2015"):
        resolve_target("Andorra")  # only in the 2015 matrix


@pytest.mark.parametrize("numbers", [[72, 48, 43, 64, 27, 14], (72.0, 48, 43, 64, 27, 14), "72,48,43,64,27,14", " 72, 48, 43, 64, 27, 14 "])
def test_custom_numbers(numbers: object) -> None:
    t = resolve_target(numbers)  # type: ignore[arg-type]
    assert (t.name, t.iso3, t.source, t.scores) == ("custom", None, "custom", SAUDI_2021)


def test_custom_mapping_subset_keeps_canonical_order() -> None:
    t = resolve_target({"uai": 64, "PDI": 72})
    assert t.source == "custom" and list(t.scores.items()) == [("PDI", 72.0), ("UAI", 64.0)]
    assert resolve_target("PDI=72, UAI=64").scores == {"PDI": 72.0, "UAI": 64.0}


def test_unknown_country_suggests_close_match() -> None:
    with pytest.raises(CulturalignError) as exc:
        resolve_target("Saudi Arabai")
    msg = str(exc.value)
    assert "Saudi Arabai" in msg and "Saudi Arabia" in msg and "culturalign targets" in msg
    assert "\n" not in msg


@pytest.mark.parametrize(
    "bad, fragment",
    [
        ([72, 48, 43, 64, 27], "expected 6"),
        ("72,48,43,64,27,14,1", "expected 6"),
        ([72, 48, 43, 64, 27, 720], "0..150"),
        ([72, 48, 43, 64, 27, -1], "0..150"),
        ([72, 48, 43, 64, 27, math.nan], "finite"),
        ([72, 48, 43, 64, 27, math.inf], "finite"),
        ("72,48,x,64,27,14", "'x'"),
        ([72, 48, 43, 64, 27, True], "number"),
        ({"PDX": 50}, "PDX"),
        ({}, "empty"),
        ("", "empty"),
    ],
)
def test_bad_values_raise_one_line_errors(bad: object, fragment: str) -> None:
    with pytest.raises(CulturalignError) as exc:
        resolve_target(bad)  # type: ignore[arg-type]
    assert fragment in str(exc.value) and "\n" not in str(exc.value)


def test_unknown_source_lists_valid_sources() -> None:
    for call in (lambda: resolve_target("SAU", source="hofstede2010"), lambda: load_table("nope"), lambda: list_countries("nope")):
        with pytest.raises(CulturalignError) as exc:
            call()
        assert all(s in str(exc.value) for s in SOURCES)


def test_table_shape_and_bounds() -> None:
    assert len(load_table("insights2021")) == 119
    assert len(load_table("hofstede2015")) == 111
    for source in SOURCES:
        isos = [t.iso3 for t in load_table(source)]
        assert len(isos) == len(set(isos))
        for t in load_table(source):
            assert t.iso3 and (len(t.iso3) == 3 or t.iso3.startswith("X"))
            assert set(t.scores) <= set(DIMENSIONS)
            assert all(0 <= v <= 150 for v in t.scores.values())
    pairs = list_countries("insights2021")
    assert ("SAU", "Saudi Arabia") in pairs and pairs == sorted(pairs, key=lambda p: p[1])


def test_load_table_returns_copies() -> None:
    load_table()[0].scores["PDI"] = -999.0
    assert load_table()[0].scores["PDI"] != -999.0


# A few rows of each raw source, typed from the public scores in the two formats (the raw files are
# not committed): CRLF and `#NULL!` in the 2015 matrix, its own codes that collide with ISO ("SLV" is
# Slovenia, "MNG" Montenegro), a region ("ARA"), sentence-case names in the insights file.
INSIGHTS_ROWS = (
    "country,pdi,idv,mas,uai,lto,ivr\nSaudi arabia,72,48,43,64,27,14\nUnited states,40,60,62,46,50,68\nGreece,60,59,57,100,51,50\n"
)
MATRIX_ROWS = (
    "ctr;country;pdi;idv;mas;uai;ltowvs;ivr\r\nARA;Arab countries;80;38;53;68;23;34\r\n"
    "MNG;Montenegro;#NULL!;#NULL!;#NULL!;#NULL!;75;20\r\nSAU;Saudi Arabia;#NULL!;#NULL!;#NULL!;#NULL!;36;52\r\n"
    "SLV;Slovenia;71;27;19;88;49;48\r\nUSA;U.S.A.;40;91;62;46;26;68\r\nGRE;Greece;60;35;57;112;45;50\r\n"
)


def test_build_from_raw_rows_gives_the_shipped_rows(tmp_path) -> None:
    """Runs in every clone: the build of the rows above is the shipped table's header plus exactly its rows."""
    from culturalign.targets import build_table

    (tmp_path / build_table.INSIGHTS_FILE).write_text(INSIGHTS_ROWS, encoding="utf-8")
    (tmp_path / build_table.MATRIX_FILE).write_bytes(MATRIX_ROWS.encode("utf-8"))
    built = build_table.build(tmp_path)
    shipped = Path(build_table.__file__).with_name("countries.csv").read_text(encoding="utf-8")
    assert built.startswith(build_table.HEADER) and shipped.startswith(build_table.HEADER)
    rows = built[len(build_table.HEADER) :].splitlines()
    assert rows[0] == "source,iso3,name,PDI,IDV,MAS,UAI,LTO,IVR" and len(rows) == 1 + 3 + 6
    assert set(rows) <= set(shipped.splitlines())
    assert "hofstede2015,SVN,Slovenia,71,27,19,88,49,48" in rows and "hofstede2015,MNE,Montenegro,,,,,75,20" in rows
    assert "hofstede2015,XARA,Arab Countries,80,38,53,68,23,34" in rows and "hofstede2015,SAU,Saudi Arabia,,,,,36,52" in rows


def test_shipped_csv_matches_build_from_raw_data() -> None:
    """The committed table is exactly what build_table produces from the full raw data: ../shared/data/hofstede
    beside the clone (as CI has it) or $CULTURALIGN_HOFSTEDE_DIR. Skipped without them, except under CI."""
    import os

    beside = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "hofstede"
    raw = Path(os.environ.get("CULTURALIGN_HOFSTEDE_DIR") or beside)
    if not (raw / "hofstede_country_scores.csv").exists():
        if os.environ.get("CI"):
            pytest.fail(f"raw Hofstede data not found at {raw}: CI must rebuild the table (set CULTURALIGN_HOFSTEDE_DIR)")
        pytest.skip(f"raw Hofstede data not found at {raw}")
    from culturalign.targets import build_table

    shipped = Path(build_table.__file__).with_name("countries.csv").read_text(encoding="utf-8")
    assert build_table.build(raw) == shipped


def test_every_alias_points_into_the_table() -> None:
    from culturalign.targets.table import ALIASES

    isos = {t.iso3 for s in SOURCES for t in load_table(s)}
    assert set(ALIASES.values()) <= isos


@pytest.mark.parametrize(
    ("query", "text"),
    [
        ("SAU", "You are a person from Saudi Arabia."),
        ("USA", "You are a person from the United States."),
        ("Netherlands", "You are a person from the Netherlands."),
        ("JPN", "You are a person from Japan."),
    ],
)
def test_persona_reads_as_english(query: str, text: str) -> None:
    """The default init text names the target as a sentence would, article included (#20.4)."""
    assert persona(resolve_target(query)) == text


def test_persona_phrases_cover_only_table_codes_and_every_region() -> None:
    """A phrase for a code the table lacks is dead; a region left out would read 'from Africa East'."""
    codes = {t.iso3 for source in SOURCES for t in load_table(source)}
    assert set(PHRASES) <= codes
    assert {c for c in codes if c and c.startswith("X")} <= set(PHRASES)


def test_custom_target_persona_names_no_country() -> None:
    text = persona(resolve_target("72,48,43,64,27,14"))
    assert text == CUSTOM_PERSONA and "Saudi" not in text and "custom" not in text

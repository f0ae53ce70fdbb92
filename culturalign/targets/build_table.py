"""Build ``countries.csv`` (the package's own Hofstede score table) from the two raw sources.

Run once when the raw data change::

    python -m culturalign.targets.build_table /path/to/shared/data/hofstede [--out FILE]

Inputs (both are country scores, i.e. facts; the table cites where they come from):

* ``hofstede_country_scores.csv`` -- post-2021 Hofstede Insights / The Culture Factor scores
  (``,``-separated, lower-case names such as "Saudi arabia", empty cell = missing) -> source
  ``insights2021``.
* ``6-dimensions-for-website-2015-08-16.csv`` -- the official 2015 six-dimension matrix
  (``;``-separated, CRLF, ``#NULL!`` = missing, its own 3-letter codes, ``ltowvs`` = LTO) -> source
  ``hofstede2015``.

Every row gets an ISO 3166-1 alpha-3 code and one canonical English name, so that a country
resolves the same way whichever source is chosen. Regions and language groups of the 2015
matrix ("Arab countries", "Belgium French") get a code ``X`` + the 2015 code and are kept.
The build fails loudly on any row it cannot map, so new raw data cannot slip in unmapped.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

DIMENSIONS = ("PDI", "IDV", "MAS", "UAI", "LTO", "IVR")

INSIGHTS_FILE = "hofstede_country_scores.csv"
MATRIX_FILE = "6-dimensions-for-website-2015-08-16.csv"

# ISO-3 -> canonical name (English short names as people type them; "Turkey", not "Türkiye").
ISO_NAMES: dict[str, str] = {
    "ALB": "Albania",
    "DZA": "Algeria",
    "AND": "Andorra",
    "AGO": "Angola",
    "ARG": "Argentina",
    "ARM": "Armenia",
    "AUS": "Australia",
    "AUT": "Austria",
    "AZE": "Azerbaijan",
    "BGD": "Bangladesh",
    "BLR": "Belarus",
    "BEL": "Belgium",
    "BTN": "Bhutan",
    "BOL": "Bolivia",
    "BIH": "Bosnia and Herzegovina",
    "BRA": "Brazil",
    "BGR": "Bulgaria",
    "BFA": "Burkina Faso",
    "CAN": "Canada",
    "CPV": "Cape Verde",
    "CHL": "Chile",
    "CHN": "China",
    "COL": "Colombia",
    "CRI": "Costa Rica",
    "HRV": "Croatia",
    "CYP": "Cyprus",
    "CZE": "Czech Republic",
    "DNK": "Denmark",
    "DOM": "Dominican Republic",
    "ECU": "Ecuador",
    "EGY": "Egypt",
    "SLV": "El Salvador",
    "EST": "Estonia",
    "ETH": "Ethiopia",
    "FJI": "Fiji",
    "FIN": "Finland",
    "FRA": "France",
    "GEO": "Georgia",
    "DEU": "Germany",
    "GHA": "Ghana",
    "GRC": "Greece",
    "GTM": "Guatemala",
    "HND": "Honduras",
    "HKG": "Hong Kong",
    "HUN": "Hungary",
    "ISL": "Iceland",
    "IND": "India",
    "IDN": "Indonesia",
    "IRN": "Iran",
    "IRQ": "Iraq",
    "IRL": "Ireland",
    "ISR": "Israel",
    "ITA": "Italy",
    "JAM": "Jamaica",
    "JPN": "Japan",
    "JOR": "Jordan",
    "KAZ": "Kazakhstan",
    "KEN": "Kenya",
    "KWT": "Kuwait",
    "KGZ": "Kyrgyzstan",
    "LVA": "Latvia",
    "LBN": "Lebanon",
    "LBY": "Libya",
    "LTU": "Lithuania",
    "LUX": "Luxembourg",
    "MWI": "Malawi",
    "MYS": "Malaysia",
    "MLI": "Mali",
    "MLT": "Malta",
    "MEX": "Mexico",
    "MDA": "Moldova",
    "MNG": "Mongolia",
    "MNE": "Montenegro",
    "MAR": "Morocco",
    "MOZ": "Mozambique",
    "NAM": "Namibia",
    "NPL": "Nepal",
    "NLD": "Netherlands",
    "NZL": "New Zealand",
    "NGA": "Nigeria",
    "MKD": "North Macedonia",
    "NOR": "Norway",
    "PAK": "Pakistan",
    "PAN": "Panama",
    "PRY": "Paraguay",
    "PER": "Peru",
    "PHL": "Philippines",
    "POL": "Poland",
    "PRT": "Portugal",
    "PRI": "Puerto Rico",
    "QAT": "Qatar",
    "ROU": "Romania",
    "RUS": "Russia",
    "RWA": "Rwanda",
    "STP": "São Tomé and Príncipe",
    "SAU": "Saudi Arabia",
    "SEN": "Senegal",
    "SRB": "Serbia",
    "SLE": "Sierra Leone",
    "SGP": "Singapore",
    "SVK": "Slovakia",
    "SVN": "Slovenia",
    "ZAF": "South Africa",
    "KOR": "South Korea",
    "ESP": "Spain",
    "LKA": "Sri Lanka",
    "SUR": "Suriname",
    "SWE": "Sweden",
    "CHE": "Switzerland",
    "SYR": "Syria",
    "TWN": "Taiwan",
    "TZA": "Tanzania",
    "THA": "Thailand",
    "TTO": "Trinidad and Tobago",
    "TUN": "Tunisia",
    "TUR": "Turkey",
    "UGA": "Uganda",
    "UKR": "Ukraine",
    "ARE": "United Arab Emirates",
    "GBR": "United Kingdom",
    "USA": "United States",
    "URY": "Uruguay",
    "VEN": "Venezuela",
    "VNM": "Vietnam",
    "ZMB": "Zambia",
    "ZWE": "Zimbabwe",
    # Regions and sub-national groups of the 2015 matrix: not countries, kept under X codes.
    "XAFE": "Africa East",
    "XAFW": "Africa West",
    "XARA": "Arab Countries",
    "XBEF": "Belgium French",
    "XBEN": "Belgium Dutch",
    "XCAF": "Canada French",
    "XGEE": "Germany East",
    "XSAW": "South Africa White",
    "XSWF": "Switzerland French",
    "XSWG": "Switzerland German",
}

# The 2015 matrix's own codes -> ISO-3. Several differ from ISO and some collide with another
# country's ISO code (2015 "SLV" is Slovenia, ISO SLV is El Salvador; 2015 "MNG" is Montenegro,
# ISO MNG is Mongolia), which is why the mapping is explicit rather than "keep the code".
MATRIX_CODES: dict[str, str] = {
    "AFE": "XAFE",
    "AFW": "XAFW",
    "ALB": "ALB",
    "ALG": "DZA",
    "AND": "AND",
    "ARA": "XARA",
    "ARG": "ARG",
    "ARM": "ARM",
    "AUL": "AUS",
    "AUT": "AUT",
    "AZE": "AZE",
    "BAN": "BGD",
    "BLR": "BLR",
    "BEL": "BEL",
    "BEF": "XBEF",
    "BEN": "XBEN",
    "BOS": "BIH",
    "BRA": "BRA",
    "BUL": "BGR",
    "BUF": "BFA",
    "CAN": "CAN",
    "CAF": "XCAF",
    "CHL": "CHL",
    "CHI": "CHN",
    "COL": "COL",
    "COS": "CRI",
    "CRO": "HRV",
    "CYP": "CYP",
    "CZE": "CZE",
    "DEN": "DNK",
    "DOM": "DOM",
    "ECA": "ECU",
    "EGY": "EGY",
    "ETH": "ETH",
    "SAL": "SLV",
    "EST": "EST",
    "FIN": "FIN",
    "FRA": "FRA",
    "GEO": "GEO",
    "GER": "DEU",
    "GEE": "XGEE",
    "GHA": "GHA",
    "GBR": "GBR",
    "GRE": "GRC",
    "GUA": "GTM",
    "HOK": "HKG",
    "HUN": "HUN",
    "ICE": "ISL",
    "IND": "IND",
    "IDO": "IDN",
    "IRA": "IRN",
    "IRQ": "IRQ",
    "IRE": "IRL",
    "ISR": "ISR",
    "ITA": "ITA",
    "JAM": "JAM",
    "JPN": "JPN",
    "JOR": "JOR",
    "KOR": "KOR",
    "KYR": "KGZ",
    "LAT": "LVA",
    "LIT": "LTU",
    "LUX": "LUX",
    "MAC": "MKD",
    "MAL": "MYS",
    "MLI": "MLI",
    "MLT": "MLT",
    "MEX": "MEX",
    "MOL": "MDA",
    "MNG": "MNE",
    "MOR": "MAR",
    "NET": "NLD",
    "NZL": "NZL",
    "NIG": "NGA",
    "NOR": "NOR",
    "PAK": "PAK",
    "PAN": "PAN",
    "PER": "PER",
    "PHI": "PHL",
    "POL": "POL",
    "POR": "PRT",
    "PUE": "PRI",
    "ROM": "ROU",
    "RUS": "RUS",
    "RWA": "RWA",
    "SAU": "SAU",
    "SER": "SRB",
    "SIN": "SGP",
    "SLK": "SVK",
    "SLV": "SVN",
    "SAF": "ZAF",
    "SAW": "XSAW",
    "SPA": "ESP",
    "SUR": "SUR",
    "SWE": "SWE",
    "SWI": "CHE",
    "SWF": "XSWF",
    "SWG": "XSWG",
    "TAI": "TWN",
    "TAN": "TZA",
    "THA": "THA",
    "TRI": "TTO",
    "TUR": "TUR",
    "USA": "USA",
    "UGA": "UGA",
    "UKR": "UKR",
    "URU": "URY",
    "VEN": "VEN",
    "VIE": "VNM",
    "ZAM": "ZMB",
    "ZIM": "ZWE",
}

# The insights file names every country in sentence case ("Saudi arabia"); map by lower-case name.
_NAME_TO_ISO = {name.casefold(): iso for iso, name in ISO_NAMES.items()}

HEADER = """\
# Hofstede's six cultural dimensions per country, as shipped with culturalign.
# Built by `python -m culturalign.targets.build_table` from two public sources; do not edit by hand.
# source=hofstede2015: official 6-D dimension data matrix, 2015-08-16 release (geerthofstede.com,
#   "Dimension data matrix"; usable by researchers). Cite: G. Hofstede, G.J. Hofstede & M. Minkov (2010),
#   Cultures and Organizations: Software of the Mind, 3rd ed., McGraw-Hill. LTO is the WVS-based `ltowvs`.
#   Rows with iso3 starting with X are regions or language groups of that matrix, not countries.
# source=insights2021: country scores shown by Hofstede Insights / The Culture Factor Group's country
#   comparison tool after its 2021 revision. The Arab-state scores there (e.g. Saudi Arabia
#   72,48,43,64,27,14) come from M. Almutairi, K. Heller & D. Yen (2021), "Reclaiming the heterogeneity of
#   the Arab states", Cross Cultural & Strategic Management 28(1), 158-176 (VSM 2013 survey).
# Empty cell = score not published for that country in that source. Scores may exceed 100 (e.g. Greece UAI 112).
"""


def _score(raw: str) -> str:
    """Normalise one raw cell: missing markers become empty, numbers become plain integers."""
    raw = raw.strip()
    if raw in ("", "#NULL!"):
        return ""
    value = float(raw)
    return str(int(value)) if value.is_integer() else repr(value)


def read_insights(path: Path) -> list[dict[str, str]]:
    rows = []
    with path.open(encoding="utf-8", newline="") as f:
        for rec in csv.DictReader(f):
            key = rec["country"].strip().casefold()
            if key not in _NAME_TO_ISO:
                raise SystemExit(f"{path.name}: no ISO-3 mapping for country {rec['country']!r}; add it to ISO_NAMES")
            iso = _NAME_TO_ISO[key]
            row = {"source": "insights2021", "iso3": iso, "name": ISO_NAMES[iso]}
            row.update({d: _score(rec[d.lower()]) for d in DIMENSIONS})
            rows.append(row)
    return rows


def read_matrix(path: Path) -> list[dict[str, str]]:
    rows = []
    # The 2015 file is ';'-separated with CRLF line ends; newline="" lets csv handle the CR.
    with path.open(encoding="utf-8", newline="") as f:
        for rec in csv.DictReader(f, delimiter=";"):
            code = rec["ctr"].strip()
            if code not in MATRIX_CODES:
                raise SystemExit(f"{path.name}: no ISO-3 mapping for code {code!r} ({rec['country']}); add it to MATRIX_CODES")
            iso = MATRIX_CODES[code]
            row = {"source": "hofstede2015", "iso3": iso, "name": ISO_NAMES[iso]}
            cols = {"PDI": "pdi", "IDV": "idv", "MAS": "mas", "UAI": "uai", "LTO": "ltowvs", "IVR": "ivr"}
            row.update({d: _score(rec[c]) for d, c in cols.items()})
            rows.append(row)
    return rows


def build(data_dir: Path) -> str:
    """Return the CSV text (header comments + rows) built from ``data_dir``."""
    rows = read_insights(data_dir / INSIGHTS_FILE) + read_matrix(data_dir / MATRIX_FILE)
    seen: set[tuple[str, str]] = set()
    for row in rows:  # one row per (source, iso3), or resolve_target would be ambiguous
        key = (row["source"], row["iso3"])
        if key in seen:
            raise SystemExit(f"duplicate row for {key}")
        seen.add(key)
    rows.sort(key=lambda r: (r["source"] != "insights2021", r["name"]))
    out = io.StringIO()
    out.write(HEADER)
    writer = csv.DictWriter(out, fieldnames=["source", "iso3", "name", *DIMENSIONS], lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help=f"folder holding {INSIGHTS_FILE} and {MATRIX_FILE}")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).with_name("countries.csv"),
        help="where to write the table (default: the package's countries.csv)",
    )
    args = parser.parse_args(argv)
    text = build(args.data_dir)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out} ({text.count(chr(10)) - HEADER.count(chr(10)) - 1} rows)")


if __name__ == "__main__":
    main()

"""`culturalign targets`: list the country scores that can be used as targets."""

from __future__ import annotations

from culturalign.targets import DIMENSIONS, load_table


def targets(source: str = "insights2021", country: str | None = None) -> list[dict]:
    """List target countries and their Hofstede scores.

    Args:
        source: insights2021 (post-2021 Hofstede Insights scores) or hofstede2015 (official 2015 matrix).
        country: Show only names or ISO-3 codes containing this text.
    """
    rows = []
    print(f"| iso3 | country | {' | '.join(DIMENSIONS)} |   (source: {source})")
    for t in load_table(source):
        if country and country.lower() not in t.name.lower() and country.lower() != (t.iso3 or "").lower():
            continue
        cells = " | ".join(f"{t.scores[d]:.0f}" if d in t.scores else "-" for d in DIMENSIONS)
        print(f"| {t.iso3} | {t.name} | {cells} |")
        rows.append({"iso3": t.iso3, "name": t.name, "scores": t.scores})
    return rows

"""Hofstede country scores used as alignment targets (see ``countries.csv`` for the sources)."""

from culturalign.targets.table import (
    DIMENSIONS,
    SOURCES,
    Target,
    list_countries,
    load_table,
    persona,
    resolve_target,
)

__all__ = ["DIMENSIONS", "SOURCES", "Target", "list_countries", "load_table", "persona", "resolve_target"]

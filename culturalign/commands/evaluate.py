"""`culturalign evaluate` (in progress)."""

from culturalign.errors import CulturalignError


def evaluate(model: str = "embedded") -> None:
    """Not available in this build yet.

    Args:
        model: Backbone.
    """
    raise CulturalignError("culturalign evaluate is not available in this build yet")

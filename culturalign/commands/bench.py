"""`culturalign bench` (in progress)."""

from culturalign.errors import CulturalignError


def bench(model: str = "embedded") -> None:
    """Not available in this build yet.

    Args:
        model: Backbone.
    """
    raise CulturalignError("culturalign bench is not available in this build yet")

class CulturalignError(Exception):
    """A user-facing error: one line that names the bad value and the fix."""

"""How often a subscriber gets digests: the one list of frequencies, in the order they are shown.

Every list of frequencies (config.yaml's schema, the command line's `--frequency`, stored web
choices, the schedule's jobs, the French labels) comes from here. Imported by the command line
before anything else (`--frequency` choices), so it imports nothing of syndicator or pydantic.
"""

from __future__ import annotations

from typing import Literal, get_args

Frequency = Literal["immediate", "daily", "weekly", "monthly"]
FREQUENCIES: tuple[Frequency, ...] = get_args(Frequency)
DEFAULT: Frequency = "weekly"


def as_frequency(value: str) -> Frequency:
    """A stored frequency; the default for a value this version does not know (a row written
    by a newer syndicator), rather than a crash."""
    return next((f for f in FREQUENCIES if f == value), DEFAULT)

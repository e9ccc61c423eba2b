"""How often a subscriber gets digests: the one list of frequencies, in the order they are shown.

Imported by the command line before anything else (`--frequency` choices), so it imports nothing.
"""

from typing import Literal

Frequency = Literal["immediate", "daily", "weekly", "monthly"]
FREQUENCIES: tuple[Frequency, ...] = ("immediate", "daily", "weekly", "monthly")

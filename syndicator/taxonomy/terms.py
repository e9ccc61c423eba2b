"""Taxonomy terms: their keys and slugs (folded by `syndicator.folding`), and close spellings.

Term names match whatever their case, accents or punctuation, so `Santé` and `sante` are one
term; the key that says so is the term's slug, which is also its feed's file name. Slugs are
ASCII, lower-case and hyphenated (`Politique de la ville - DSU` → `politique-de-la-ville-dsu`).
Which items a subscriber's terms let through is `syndicator.taxonomy.matching`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache

from syndicator.folding import fold

_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def slugify(name: str) -> str:
    """The ASCII, lower-case, hyphenated form of a term name; stable across versions.

    Accents and ligatures fold to their letters; any other character that is not an ASCII
    letter or digit (typographic apostrophes and dashes included) separates words."""
    return _NOT_ALNUM.sub("-", fold(name)).strip("-")


@lru_cache(maxsize=4096)
def term_key(name: str) -> str:
    """The identity of a term name within its vocabulary: its slug, or the name when it has none."""
    return slugify(name) or " ".join(name.split()).lower()


def _typos(a: str, b: str) -> int:
    """Edits from a to b: letters added, removed, replaced or swapped with their neighbour
    (optimal string alignment distance)."""
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, previous2[j - 2] + 1)
            current.append(cost)
        previous2, previous = previous, current
    return previous[-1]


def typo_allowance(key: str) -> int:
    """How many typos a "did you mean" forgives in a name of that length: none under 4 letters
    (any two-letter name is a typo away from another), one up to 6 (`Paris` is not `Paars`),
    two from 7 letters, three from 13."""
    return 0 if len(key) < 4 else 1 if len(key) < 7 else 2 if len(key) < 13 else 3


def is_close(key: str, other: str) -> bool:
    """Whether two normalised names differ by a few typos only, for "did you mean"."""
    allowed = typo_allowance(key)
    return abs(len(key) - len(other)) <= allowed and _typos(key, other) <= allowed


def close_matches(label: str, names: Sequence[str], n: int = 3) -> list[str]:
    """Up to n of `names` that `label` looks like a typo of, closest first; none rather than a
    guess: a suggestion must be a few typos away (accents and case do not count)."""
    key = term_key(label)
    scored = sorted(
        (_typos(key, term_key(name)), index)
        for index, name in enumerate(names)
        if is_close(key, term_key(name))
    )
    return [names[index] for _, index in scored[:n]]

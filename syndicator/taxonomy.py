"""Taxonomy terms: their keys and slugs.

Term names match whatever their case, accents or punctuation, so `Santé` and `sante` are one
term; the key that says so is the term's slug, which is also its feed's file name. Slugs are
ASCII, lower-case and hyphenated (`Politique de la ville - DSU` → `politique-de-la-ville-dsu`).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

_LIGATURES = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ß": "ss"})
_NOT_ALNUM = re.compile(r"[^a-z0-9]+")


def slugify(name: str) -> str:
    """The ASCII, lower-case, hyphenated form of a term name; stable across versions."""
    decomposed = unicodedata.normalize("NFKD", name.translate(_LIGATURES))
    ascii_only = decomposed.encode("ascii", "ignore").decode("ascii").lower()
    return _NOT_ALNUM.sub("-", ascii_only).strip("-")


@lru_cache(maxsize=4096)
def term_key(name: str) -> str:
    """The identity of a term name within its vocabulary: its slug, or the name when it has none."""
    return slugify(name) or " ".join(name.split()).lower()

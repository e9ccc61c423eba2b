"""Folding text for comparison, the one name normaliser: lower case, accents dropped, ligatures
split (`Œuvres de Santé` → `oeuvres de sante`).

Term keys and feed slugs (`syndicator.taxonomy.terms`), territoire labels
(`syndicator.taxonomy.territoires`) and the words of a title matched against its URL slug
(`syndicator.parsing.titles`) are all this fold, then each keeps the characters it needs. It
sits in the foundation, below parsing, because titles need it too.
"""

from __future__ import annotations

import unicodedata

# Letters NFKD keeps whole: each is written out as the letters it stands for.
_LIGATURES = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ß": "ss"})


def fold(text: str) -> str:
    """`text` in lower case, without accents, ligatures written out; other characters kept."""
    if text.isascii():
        return text.lower()
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower()

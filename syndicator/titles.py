"""Restoring an item's title from its URL slug, with the accents and case of the body's words.

The source website builds URLs from titles by dropping accents and apostrophes
(`L'assemblée générale ...` → `lassemblee-generale-...`). The body usually repeats those words,
so each slug word takes the form it has there. Runs of consecutive slug words are matched against
runs of consecutive body words, and the longest runs win: that is how the neighbouring words
choose between several forms (`a-amiens` → `à Amiens`, `appel-a-projets` → `appel à projets`).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache

_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
# What may sit between two body words for them to count as neighbours in a title.
_TIGHT = frozenset({" ", "-", " - ", "\u00a0", "'", "’"})
_SENTENCE_END = frozenset(".!?\n")
_LIGATURES = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "’": "", "'": ""})
# Words that only start sentences in the body are lower-cased in a title when they are one of
# these; any other word keeps its capital, as it is more likely a name than a common word.
_FUNCTION_WORDS = frozenset(
    {
        "a",
        "au",
        "aux",
        "avec",
        "ce",
        "ces",
        "cet",
        "cette",
        "dans",
        "de",
        "des",
        "du",
        "elle",
        "en",
        "et",
        "il",
        "la",
        "le",
        "les",
        "leur",
        "leurs",
        "ou",
        "par",
        "pour",
        "sa",
        "se",
        "ses",
        "son",
        "sur",
        "un",
        "une",
        "l",
        "d",
    }
)


@lru_cache(maxsize=65536)
def fold(word: str) -> str:
    """The slug form of a word: lower case, no accents, ligatures split, no apostrophes."""
    decomposed = unicodedata.normalize("NFKD", word.translate(_LIGATURES).lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@dataclass(slots=True)
class _Forms:
    inside: Counter[str] = field(default_factory=Counter)
    initial: Counter[str] = field(default_factory=Counter)

    def best(self) -> str:
        if self.inside:
            return self.inside.most_common(1)[0][0]
        form = self.initial.most_common(1)[0][0]
        first = _TOKEN.match(form)
        if first and _is_lowerable(first.group()):
            return form[0].lower() + form[1:]
        return form


def _is_lowerable(word: str) -> bool:
    head = re.split(r"['’]", word)[0]
    return fold(head) in _FUNCTION_WORDS and not (len(word) > 1 and word.isupper())


def _starts_sentence(text: str, start: int) -> bool:
    before = text[max(0, start - 8) : start].rstrip(' \t"«*“(')
    if not before:
        return start < 8  # nothing but quotes or spaces since the start of the text
    return before[-1] in _SENTENCE_END


def _tokens(text: str) -> tuple[list[str], list[re.Match[str]]]:
    """Body words, folded, and where each one stands in the text."""
    matches = list(_TOKEN.finditer(text))
    return [fold(m.group()) for m in matches], matches


def _runs(slug_words: list[str], text: str) -> list[dict[int, _Forms]]:
    """For each slug position, the body forms of every run of slug words starting there."""
    folded, matches = _tokens(text)
    wanted = set(slug_words)
    positions: dict[str, list[int]] = {}
    for index, word in enumerate(folded):
        if word in wanted:
            positions.setdefault(word, []).append(index)
    runs: list[dict[int, _Forms]] = [{} for _ in slug_words]
    for i, word in enumerate(slug_words):
        for start in positions.get(word, ()):
            initial = _starts_sentence(text, matches[start].start())
            length = 1
            while True:
                forms = runs[i].get(length)
                if forms is None:
                    forms = runs[i][length] = _Forms()
                text_form = text[matches[start].start() : matches[start + length - 1].end()]
                (forms.initial if initial else forms.inside)[text_form] += 1
                nxt = start + length
                if (
                    i + length >= len(slug_words)
                    or nxt >= len(folded)
                    or folded[nxt] != slug_words[i + length]
                    or text[matches[nxt - 1].end() : matches[nxt].start()] not in _TIGHT
                ):
                    break
                length += 1
    return runs


def restore_title(slug: str, body_text: str) -> str:
    """The title a slug was made from, spelled as the body spells its words.

    Words the body does not have stay as they are in the slug. The first letter is upper-case.
    """
    slug_words = [w for w in re.split(r"[-_]+", slug.lower()) if w]
    if not slug_words:
        return ""
    runs = _runs(slug_words, body_text)
    count = len(slug_words)
    # best[i]: (segments, unmatched words) to spell slug_words[i:], fewest segments first.
    best: list[tuple[int, int, int]] = [(0, 0, 0)] * (count + 1)
    for i in range(count - 1, -1, -1):
        choice = (best[i + 1][0] + 1, best[i + 1][1] + 1, 0)
        for length in runs[i]:
            rest = best[i + length]
            choice = min(choice, (rest[0] + 1, rest[1], -length))
        best[i] = choice
    pieces, i = [], 0
    while i < count:
        length = -best[i][2]
        if length == 0:
            pieces.append(slug_words[i])
            i += 1
        else:
            pieces.append(runs[i][length].best())
            i += length
    title = " ".join(pieces)
    return title[0].upper() + title[1:]

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
from functools import lru_cache
from itertools import compress

_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_TOKEN_SPLIT = re.compile(r"([^\W_]+(?:['’][^\W_]+)*)")
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


def _is_lowerable(word: str) -> bool:
    head = re.split(r"['’]", word)[0]
    return fold(head) in _FUNCTION_WORDS and not (len(word) > 1 and word.isupper())


def _starts_sentence(separator: str, first: bool) -> bool:
    """Whether the word after `separator` (the text since the previous word) starts a sentence."""
    before = separator.rstrip(' \t"«*“(')
    return before[-1] in _SENTENCE_END if before else first


class _Words:
    """The body cut into words and what separates them: `words[i]` follows `separators[i]`."""

    def __init__(self, text: str) -> None:
        parts = _TOKEN_SPLIT.split(text)  # one C call: [sep, word, sep, word, ..., sep]
        self.separators = parts[0::2]
        self.words = parts[1::2]
        self.folded = list(map(fold, self.words))

    def form(self, start: int, length: int) -> str:
        pieces = [self.words[start]]
        for index in range(start + 1, start + length):
            pieces += (self.separators[index], self.words[index])
        return "".join(pieces)


def _runs(slug_words: list[str], body: _Words) -> list[dict[int, list[int]]]:
    """For each slug position, every run length the body has from there, with where it starts."""
    folded, separators = body.folded, body.separators
    wanted = set(slug_words)
    positions: dict[str, list[int]] = {}
    for index in compress(range(len(folded)), map(wanted.__contains__, folded)):  # C loops
        positions.setdefault(folded[index], []).append(index)
    runs: list[dict[int, list[int]]] = [{} for _ in slug_words]
    for i, word in enumerate(slug_words):
        starts = positions.get(word)
        if not starts:
            continue
        found = runs[i]
        found[1] = list(starts)  # every occurrence is a run of one word
        for start in starts:
            length = 1
            while (
                i + length < len(slug_words)
                and start + length < len(folded)
                and folded[start + length] == slug_words[i + length]
                and separators[start + length] in _TIGHT
            ):
                length += 1
                found.setdefault(length, []).append(start)
    return runs


def _best_form(body: _Words, starts: list[int], length: int) -> str:
    """The most frequent spelling of a run, preferring those that do not start a sentence."""
    inside: Counter[str] = Counter()
    initial: Counter[str] = Counter()
    for start in starts:
        form = body.form(start, length)
        (initial if _starts_sentence(body.separators[start], start == 0) else inside)[form] += 1
    if inside:
        return inside.most_common(1)[0][0]
    form = initial.most_common(1)[0][0]
    first = _TOKEN.match(form)
    if first and _is_lowerable(first.group()):
        return form[0].lower() + form[1:]
    return form


def restore_title(slug: str, body_text: str) -> str:
    """The title a slug was made from, spelled as the body spells its words.

    Words the body does not have stay as they are in the slug. The first letter is upper-case.
    """
    slug_words = [w for w in re.split(r"[-_]+", slug.lower()) if w]
    if not slug_words:
        return ""
    body = _Words(body_text)
    runs = _runs(slug_words, body)
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
            pieces.append(_best_form(body, runs[i][length], length))
            i += length
    title = " ".join(pieces)
    return title[0].upper() + title[1:]

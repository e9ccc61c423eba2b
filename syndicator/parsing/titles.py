"""Restoring an item's title from its URL slug, with the accents and case of the body's words.

The source website builds URLs from titles by dropping accents and apostrophes
(`L'assemblée générale ...` → `lassemblee-generale-...`). The body usually repeats those words,
so each slug word takes the form it has there. Runs of consecutive slug words are matched against
runs of consecutive body words, and the longest runs win: that is how the neighbouring words
choose between several forms (`a-amiens` → `à Amiens`, `appel-a-projets` → `appel à projets`).
"""

from __future__ import annotations

import re
from collections import Counter
from functools import lru_cache
from itertools import compress

from syndicator import folding

_TOKEN = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_TOKEN_SPLIT = re.compile(r"([^\W_]+(?:['’][^\W_]+)*)")
# What may sit between two body words for them to count as neighbours in a title.
_TIGHT = frozenset({" ", "-", " - ", "\u00a0", "'", "’"})
_SENTENCE_END = frozenset(".!?\n")
_APOSTROPHES = str.maketrans({"’": "", "'": ""})
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
    """The slug form of a word: folded (`syndicator.folding`), without apostrophes."""
    return folding.fold(word.translate(_APOSTROPHES))


def _is_lowerable(word: str) -> bool:
    head = re.split(r"['’]", word)[0]
    return fold(head) in _FUNCTION_WORDS and not (len(word) > 1 and word.isupper())


def _starts_sentence(separator: str, first: bool) -> bool:
    """Whether the word after `separator` (the text since the previous word) starts a sentence."""
    before = separator.rstrip(' \t"«*“(')
    return before[-1] in _SENTENCE_END if before else first


# The elided words French writes before a vowel: `l'évaluation` also offers `évaluation`, as a
# title may start with the noun the body writes after `L'` (`evaluation-des-contrats-...`).
_ELISION = re.compile(r"(?:l|d|j|m|n|s|t|c|qu|jusqu|lorsqu|puisqu)['’](?=[^\W_])", re.IGNORECASE)
# Bounds that keep restoring a title linear in the body whatever the input: the occurrences of
# a word looked at (the first ones; a spelling is decided long before), and the slug words
# restored (a real slug has a dozen; the rest of a longer one stays as it is).
MAX_OCCURRENCES = 200
MAX_SLUG_WORDS = 100

Start = tuple[int, int]  # the index of a body word, and how many of its characters are elided


class _Words:
    """The body cut into words and what separates them: `words[i]` follows `separators[i]`."""

    def __init__(self, text: str) -> None:
        parts = _TOKEN_SPLIT.split(text)  # one C call: [sep, word, sep, word, ..., sep]
        self.separators = parts[0::2]
        self.words = parts[1::2]
        self.folded = list(map(fold, self.words))

    def form(self, start: Start, length: int) -> str:
        index, cut = start
        pieces = [self.words[index][cut:]]
        for following in range(index + 1, index + length):
            pieces += (self.separators[following], self.words[following])
        return "".join(pieces)


def _starts(slug_words: list[str], body: _Words) -> dict[str, list[Start]]:
    """Where each slug word occurs in the body, whole or after an elision, the first
    MAX_OCCURRENCES times."""
    wanted = set(slug_words)
    found: dict[str, list[Start]] = {}
    for index in compress(range(len(body.folded)), map(wanted.__contains__, body.folded)):  # C loops
        starts = found.setdefault(body.folded[index], [])
        if len(starts) < MAX_OCCURRENCES:
            starts.append((index, 0))
    for index, word in enumerate(body.words):
        if ("'" in word or "’" in word) and (elision := _ELISION.match(word)):
            rest = fold(word[elision.end() :])
            if rest in wanted and len(starts := found.setdefault(rest, [])) < MAX_OCCURRENCES:
                starts.append((index, elision.end()))
    return found


def _runs(slug_words: list[str], body: _Words) -> list[dict[Start, int]]:
    """For each slug position, where the body has that word and how many slug words from there
    it has in a row, written tightly: each (slug position, body index) is looked at once."""
    folded, separators = body.folded, body.separators
    count, size = len(slug_words), len(folded)
    starts = _starts(slug_words, body)
    lengths: dict[tuple[int, int], int] = {}  # (slug position, body index) -> run length

    def fits(position: int, index: int) -> bool:
        return (
            position < count
            and index < size
            and folded[index] == slug_words[position]
            and separators[index] in _TIGHT
        )

    def run(position: int, index: int) -> int:
        """The run from a body word known to be slug_words[position]."""
        path: list[tuple[int, int]] = []
        known = 0
        while (cell := (position, index)) not in lengths:
            path.append(cell)
            position, index = position + 1, index + 1
            if not fits(position, index):
                break
        else:
            known = lengths[cell]
        for cell in reversed(path):
            known += 1
            lengths[cell] = known
        return known

    runs: list[dict[Start, int]] = [{} for _ in slug_words]
    for position, word in enumerate(slug_words):
        for start in starts.get(word, ()):
            index, cut = start
            if not cut:
                runs[position][start] = run(position, index)
            else:  # after an elision the word starts a run; its neighbours continue it
                following = run(position + 1, index + 1) if fits(position + 1, index + 1) else 0
                runs[position][start] = 1 + following
    return runs


def _best_form(body: _Words, starts: list[Start], length: int) -> str:
    """The most frequent spelling of a run, preferring those that do not start a sentence."""
    inside: Counter[str] = Counter()
    initial: Counter[str] = Counter()
    for start in starts:
        form = body.form(start, length)
        index, cut = start
        # After an elision, the word keeps its case wherever the sentence starts.
        sentence = not cut and _starts_sentence(body.separators[index], index == 0)
        (initial if sentence else inside)[form] += 1
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
    unrestored = slug_words[MAX_SLUG_WORDS:]
    slug_words = slug_words[:MAX_SLUG_WORDS]
    body = _Words(body_text)
    runs = _runs(slug_words, body)
    count = len(slug_words)
    longest = [max(found.values(), default=0) for found in runs]
    # best[i]: (segments, unmatched words) to spell slug_words[i:], fewest segments first.
    # A run of n words also offers every shorter run from the same start.
    best: list[tuple[int, int, int]] = [(0, 0, 0)] * (count + 1)
    for i in range(count - 1, -1, -1):
        choice = (best[i + 1][0] + 1, best[i + 1][1] + 1, 0)
        for length in range(1, longest[i] + 1):
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
            starts = [start for start, run in runs[i].items() if run >= length]
            pieces.append(_best_form(body, starts, length))
            i += length
    title = " ".join(pieces + unrestored)
    return title[0].upper() + title[1:]

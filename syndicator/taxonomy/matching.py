"""The matching rule, used by digest selection and by `explain` alike.

An item matches a subscriber when each of the subscriber's non-empty lists (thématiques,
territoires, types) shares a term with the item's. Terms compare by key (`terms.term_key`), and
territoires also along the hierarchy: a subscriber to Nord gets Roubaix news (below) and regional
news (above).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from syndicator.i18n import N_, joined
from syndicator.taxonomy.terms import term_key

if TYPE_CHECKING:
    from syndicator.parsing.items import NewsItem
    from syndicator.taxonomy.territoires import Hierarchy


def _quoted(names: Iterable[str]) -> str:
    """Names listed, each in quotes: 'Santé', 'Emploi' in English, « Santé », « Emploi » in French."""
    return joined(", ", [N_("'{name}'", name=name) for name in names])


@dataclass(frozen=True, slots=True)
class Verdict:
    """One list's say on an item: whether it lets the item through, and why, in plain words."""

    vocabulary: str
    passed: bool
    reason: str  # a `Text`: English in logs, the admin's language where `explain` prints it


@dataclass(frozen=True, slots=True)
class Interests:
    """A subscriber's lists, resolved once: term keys, and for territoires the places they cover."""

    thematiques: dict[str, str]  # key → the subscriber's spelling
    types: dict[str, str]
    territoires: tuple[tuple[str, str | None, frozenset[str]], ...]  # (spelling, place code, related codes)

    @classmethod
    def of(cls, thematiques: Sequence[str], territoires: Sequence[str], types: Sequence[str],
           hierarchy: Hierarchy) -> Interests:  # fmt: skip
        places = []
        for label in territoires:
            place = hierarchy.resolve(label).place
            places.append(
                (
                    label,
                    place.code if place else None,
                    hierarchy.related(place.code) if place else frozenset(),
                )
            )
        return cls(
            thematiques={term_key(t): t for t in thematiques},
            types={term_key(t): t for t in types},
            territoires=tuple(places),
        )


def _by_key(vocabulary: str, wanted: dict[str, str], names: Sequence[str]) -> Verdict:
    if not wanted:
        return Verdict(vocabulary, True, N_("no {vocabulary} chosen: all of them", vocabulary=vocabulary))
    for name in names:
        if term_key(name) in wanted:
            return Verdict(
                vocabulary,
                True,
                N_("{vocabulary}: the item's '{name}' is followed", vocabulary=vocabulary, name=name),
            )
    listed = _quoted(names) or N_("none")
    chosen = _quoted(wanted.values())
    return Verdict(
        vocabulary,
        False,
        N_(
            "{vocabulary}: the item has {listed}, the subscriber follows {chosen}",
            vocabulary=vocabulary, listed=listed, chosen=chosen,
        ),
    )  # fmt: skip


def territoire_verdict(interests: Interests, names: Sequence[str], hierarchy: Hierarchy) -> Verdict:
    """Whether an item's territoires meet the subscriber's: same place, below it, or above it."""
    if not interests.territoires:
        return Verdict("territoires", True, N_("no territoires chosen: all of them"))
    for name in names:
        place = hierarchy.resolve(name).place
        for label, code, related in interests.territoires:
            if place is None or code is None:
                if term_key(name) == term_key(label):
                    return Verdict(
                        "territoires", True, N_("territoires: the item's '{name}' is followed", name=name)
                    )
                continue
            if place.code == code:
                return Verdict(
                    "territoires",
                    True,
                    N_("territoires: the item's '{name}' is followed ('{label}')", name=name, label=label),
                )
            if place.code in related:
                relation = (
                    N_(
                        "territoires: the item's '{name}' is below '{label}', which is followed",
                        name=name,
                        label=label,
                    )
                    if code in hierarchy.ancestors(place.code)
                    else N_(
                        "territoires: the item's '{name}' is above '{label}', which is followed",
                        name=name,
                        label=label,
                    )
                )
                return Verdict("territoires", True, relation)
    listed = _quoted(names) or N_("none")
    chosen = _quoted(label for label, _, _ in interests.territoires)
    return Verdict(
        "territoires",
        False,
        N_(
            "territoires: the item has {listed}, none at, below or above {chosen}",
            listed=listed,
            chosen=chosen,
        ),
    )


def verdicts(interests: Interests, item: NewsItem, hierarchy: Hierarchy) -> list[Verdict]:
    """Each list's say on an item (thématiques, territoires, types), for `explain` and matching."""
    return [
        _by_key("thematiques", interests.thematiques, [t.name for t in item.thematiques]),
        territoire_verdict(interests, [t.name for t in item.territoires], hierarchy),
        _by_key("types", interests.types, [item.type.name] if item.type else []),
    ]


def matches(interests: Interests, item: NewsItem, hierarchy: Hierarchy) -> bool:
    """The rule: each non-empty list of the subscriber shares a term with the item."""
    return all(v.passed for v in verdicts(interests, item, hierarchy))


CACHED_INTERESTS = 256


class MatchIndex:
    """Items indexed by term and place, so that finding a subscriber's items is a few set
    operations rather than a test of every item: the same rule as `matches`, for many
    subscribers at once (tests/test_digests.py holds both to an independent statement of it)."""

    def __init__(self, items: Sequence[NewsItem], hierarchy: Hierarchy) -> None:
        self.hierarchy = hierarchy
        self.everything = frozenset(range(len(items)))
        self._thematiques: dict[str, set[int]] = {}
        self._types: dict[str, set[int]] = {}
        self._at_or_below: dict[str, set[int]] = {}  # place → items at it or below it
        self._at: dict[str, set[int]] = {}  # place → items at it
        self._labels: dict[str, set[int]] = {}  # labels in no hierarchy → items
        # Subscribers often share interests; the sets are large, so only recent ones are kept.
        self._cache: OrderedDict[tuple[object, ...], tuple[int, ...]] = OrderedDict()
        for index, item in enumerate(items):
            for term in item.thematiques:
                self._thematiques.setdefault(term_key(term.name), set()).add(index)
            if item.type:
                self._types.setdefault(term_key(item.type.name), set()).add(index)
            for term in item.territoires:
                place = hierarchy.resolve(term.name).place
                if place is None:
                    self._labels.setdefault(term_key(term.name), set()).add(index)
                    continue
                self._at.setdefault(place.code, set()).add(index)
                for code in (place.code, *hierarchy.ancestors(place.code)):
                    self._at_or_below.setdefault(code, set()).add(index)

    def _places(self, interests: Interests) -> set[int]:
        found: set[int] = set()
        for label, code, _ in interests.territoires:
            if code is None:
                found |= self._labels.get(term_key(label), set())
                continue
            found |= self._at_or_below.get(code, set())
            for ancestor in self.hierarchy.ancestors(code):
                found |= self._at.get(ancestor, set())
        return found

    def matching(self, interests: Interests) -> tuple[int, ...]:
        """The positions of the items that match these interests, in increasing order."""
        key = (
            tuple(sorted(interests.thematiques)),
            tuple(sorted(interests.types)),
            tuple(sorted((label if code is None else code) for label, code, _ in interests.territoires)),
        )
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        wanted = []  # intersected with each other, never with a copy of every item
        if interests.thematiques:
            wanted.append(set().union(*(self._thematiques.get(k, set()) for k in interests.thematiques)))
        if interests.types:
            wanted.append(set().union(*(self._types.get(k, set()) for k in interests.types)))
        if interests.territoires:
            wanted.append(self._places(interests))
        result = set.intersection(*wanted) if wanted else self.everything
        found = self._cache[key] = tuple(sorted(result))
        if len(self._cache) > CACHED_INTERESTS:
            self._cache.popitem(last=False)
        return found

"""Which items each subscriber gets, as `Digest` values: pure functions, no I/O.

The digest rule (docs/architecture.md, Digest rule): the matching items a subscriber has never
been sent, first seen by the store since their last digest, published within the look-back of
their frequency; newest first, grouped by thématique, never an item twice, never an empty digest.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from operator import itemgetter
from zoneinfo import ZoneInfo

from syndicator.config.subscribers import Subscriber
from syndicator.parsing.items import NewsItem
from syndicator.taxonomy.terms import term_key

OTHER_SECTION = "Autres actualités"


@dataclass(frozen=True, slots=True)
class Section:
    """The items of one thématique in a digest, newest first."""

    title: str
    items: tuple[NewsItem, ...]


@dataclass(frozen=True, slots=True)
class Digest:
    """One email's worth of news for one subscriber."""

    subscriber: Subscriber
    items: tuple[NewsItem, ...]  # every item the digest delivers, newest first
    sections: tuple[Section, ...]  # what the message shows: at most email.max_items items
    more: int  # items delivered but not shown ("… et N autres actualités")
    issued: datetime  # when it was built (aware); the subject's date
    since: datetime | None  # the previous digest, None for a subscriber's first


@dataclass(frozen=True, slots=True)
class DigestLinks:
    """The URLs a digest carries besides its items'."""

    feeds_index: str
    unsubscribe: str
    preferences: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """A stored item that may go into digests, with when the store first saw it."""

    id: int
    item: NewsItem
    first_seen: datetime


def _day(candidate: Candidate, zone: ZoneInfo) -> date:
    """The candidate's publication day, else the day the store first saw it in `zone`."""
    return candidate.item.published or candidate.first_seen.astimezone(zone).date()


def newest_first(candidates: Iterable[Candidate], zone: ZoneInfo) -> list[Candidate]:
    """Publication day (the site's, `zone`), then when first seen, then URL, newest first."""
    return sorted(candidates, key=lambda c: (_day(c, zone), c.first_seen, c.item.url), reverse=True)


class Pool:
    """The candidates of a run, newest first (`newest_first`), laid out once for choosing.

    Choosing a subscriber's items is then a cut of their matching positions at the look-back's
    first day (candidates being newest first, those inside it come first) and, only when they
    had a digest before, a filter on each remaining position; never a walk over every match."""

    def __init__(self, candidates: Sequence[Candidate], zone: ZoneInfo) -> None:
        """`candidates` newest first in `zone`, the site's: its days are those the look-back counts."""
        self.zone = zone
        self.items = [c.item for c in candidates]
        self._ids = [c.id for c in candidates]
        self._first_seen = [c.first_seen for c in candidates]
        self._ages = [-_day(c, zone).toordinal() for c in candidates]  # never decreasing
        self._cuts: dict[date, int] = {}

    def choose(
        self,
        positions: Sequence[int],
        *,
        sent: Container[int],
        since: datetime | None,
        now: datetime,
        lookback_days: int,
    ) -> Sequence[int]:
        """The positions of a subscriber's next digest, from the positions (increasing) of the
        candidates matching their interests: never sent to them, first seen since their last
        digest, published within the look-back (days of the site's zone); still newest first."""
        oldest = now.astimezone(self.zone).date() - timedelta(days=lookback_days)
        cut = self._cuts.get(oldest)
        if cut is None:
            cut = self._cuts[oldest] = bisect_right(self._ages, -oldest.toordinal())
        chosen = positions[: bisect_left(positions, cut)]
        if since is not None:
            first_seen = self._first_seen
            chosen = [p for p in chosen if first_seen[p] > since]
        if sent:
            ids = self._ids
            chosen = [p for p in chosen if ids[p] not in sent]
        return chosen

    def items_at(self, positions: Sequence[int]) -> tuple[NewsItem, ...]:
        """The items at these positions, in their order."""
        if len(positions) < 2:  # itemgetter gives a bare item for one position
            return tuple(self.items[p] for p in positions)
        return itemgetter(*positions)(self.items)  # type: ignore[no-any-return]


def build_digest(
    subscriber: Subscriber,
    chosen: Sequence[NewsItem],
    *,
    since: datetime | None,
    issued: datetime,
    max_items: int,
) -> Digest | None:
    """The digest of these items (newest first), grouped by thématique; None when there is
    nothing to send.

    An item goes under the first of its thématiques the subscriber follows (or its first one),
    so it appears once; sections follow the subscriber's order, then alphabetical order."""
    if not chosen:
        return None
    shown = chosen[:max_items]
    followed = [term_key(t) for t in subscriber.thematiques]
    groups: dict[str, list[NewsItem]] = {}
    for item in shown:
        names = [t.name for t in item.thematiques]
        preferred = [n for n in names if term_key(n) in followed] if followed else []
        title = (preferred or names or [OTHER_SECTION])[0]
        groups.setdefault(title, []).append(item)

    def rank(title: str) -> tuple[int, int, str]:
        key = term_key(title)
        if title == OTHER_SECTION:
            return (2, 0, "")
        if key in followed:
            return (0, followed.index(key), "")
        return (1, 0, key)

    sections = tuple(Section(title, tuple(groups[title])) for title in sorted(groups, key=rank))
    return Digest(
        subscriber=subscriber,
        items=tuple(chosen),
        sections=sections,
        more=len(chosen) - len(shown),
        issued=issued,
        since=since,
    )

"""Which items each subscriber gets, as `Digest` values: pure functions, no I/O.

The digest rule (DESIGN.md): the matching items a subscriber has never been sent, first seen by
the store since their last digest, published within the look-back of their frequency; newest
first, grouped by thématique, never an item twice, never an empty digest.
"""

from __future__ import annotations

from collections.abc import Container, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from .french_dates import PARIS
from .items import NewsItem
from .subscribers import Subscriber
from .taxonomy import term_key

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
class RenderedDigest:
    """A digest rendered through the templates."""

    subject: str
    text: str
    html: str


@dataclass(frozen=True, slots=True)
class Candidate:
    """A stored item that may go into digests, with when the store first saw it."""

    id: int
    item: NewsItem
    first_seen: datetime


def _day(candidate: Candidate) -> date:
    return candidate.item.published or candidate.first_seen.astimezone(PARIS).date()


def newest_first(candidates: Iterable[Candidate]) -> list[Candidate]:
    """Publication day, then when first seen, then URL, newest first."""
    return sorted(candidates, key=lambda c: (_day(c), c.first_seen, c.item.url), reverse=True)


def choose(
    candidates: Iterable[Candidate],
    *,
    sent: Container[int],
    since: datetime | None,
    now: datetime,
    lookback_days: int,
) -> list[Candidate]:
    """The items of a subscriber's next digest, from the items matching their interests, given
    newest first (`newest_first`) and kept in that order: never sent to them, first seen since
    their last digest, published within the look-back."""
    oldest = now.astimezone(PARIS).date() - timedelta(days=lookback_days)
    chosen = []
    for candidate in candidates:
        if _day(candidate) < oldest:
            break  # newest first: every later candidate is older still
        if candidate.id not in sent and (since is None or candidate.first_seen > since):
            chosen.append(candidate)
    return chosen


def build_digest(
    subscriber: Subscriber,
    chosen: Sequence[Candidate],
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
    ordered = list(chosen)
    shown = ordered[:max_items]
    followed = [term_key(t) for t in subscriber.thematiques]
    groups: dict[str, list[NewsItem]] = {}
    for candidate in shown:
        names = [t.name for t in candidate.item.thematiques]
        preferred = [n for n in names if term_key(n) in followed]
        title = (preferred or names or [OTHER_SECTION])[0]
        groups.setdefault(title, []).append(candidate.item)

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
        items=tuple(c.item for c in ordered),
        sections=sections,
        more=len(ordered) - len(shown),
        issued=issued,
        since=since,
    )

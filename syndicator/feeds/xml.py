"""RSS 2.0 and Atom 1.0 documents built with feedgen, around its known traps.

Pure functions: the same channel and entries give the same bytes, with no clock and no I/O.
feedgen 1.0.0 is used with these workarounds:

- Atom entry links lose rel, type and length (python-feedgen issue 135), so an enclosure would
  become a second alternate link: `_Entry` rewrites an entry's links whole.
- The RSS channel link is whichever link was added last: the alternate link is added last.
- Every date defaults to now(): every date is given, from the data.
- `formatRFC2822` switches the process locale (not thread-safe): feedgen's two references to it
  are pointed at a locale-free formatter before anything is built.
- An enclosure without a length writes `length="None"`: the length is always given, 0 if unknown.
- Naive datetimes raise: every datetime here is aware.
"""

from __future__ import annotations

import email.utils
import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

import feedgen.entry
import feedgen.feed
from feedgen.entry import FeedEntry
from feedgen.feed import FeedGenerator
from lxml import etree

from syndicator import __version__
from syndicator.parsing.items import NewsItem
from syndicator.parsing.markup import is_web_url

GENERATOR_URI = "https://github.com/syndicator/syndicator"


@dataclass(frozen=True, slots=True)
class Channel:
    """What a feed says of itself."""

    title: str
    link: str  # the page the feed is about (a term's page on the site, or the site)
    description: str
    rss_url: str  # the public URLs of the feed's two documents
    atom_url: str
    updated: datetime
    author_name: str
    author_uri: str
    category_scheme: str  # base URL of the vocabularies, for Atom category schemes
    language: str = "fr"
    ttl: int = 60


@dataclass(frozen=True, slots=True)
class Entry:
    """An item as a feed shows it, with the dates the store adds to it."""

    item: NewsItem
    published: datetime
    updated: datetime


@cache
def _locale_free_dates() -> None:
    # feedgen's formatRFC2822 calls setlocale() around strftime; email.utils gives the same
    # RFC 822 text without touching process state.
    feedgen.feed.formatRFC2822 = email.utils.format_datetime
    feedgen.entry.formatRFC2822 = email.utils.format_datetime


class _Entry(FeedEntry):  # type: ignore[misc]
    """feedgen's entry, writing its Atom links with all their attributes."""

    def __init__(self, links: Sequence[dict[str, str]]) -> None:
        super().__init__()
        self._atom_links = list(links)

    def atom_entry(self, extensions: bool = True) -> Any:
        entry = super().atom_entry(extensions)
        old = entry.findall("link")
        position = list(entry).index(old[0]) if old else len(entry)
        for element in old:
            entry.remove(element)
        for offset, attributes in enumerate(self._atom_links):
            link = etree.Element("link", attributes)
            entry.insert(position + offset, link)
        return entry

    def rss_entry(self, extensions: bool = True) -> Any:
        entry = super().rss_entry(extensions)
        # RSS category domains name the vocabulary; feedgen copies the Atom scheme URL there.
        for category in entry.iter("category"):
            category.set("domain", category.get("domain", "").rstrip("/").rsplit("/", 1)[-1])
        return entry


def _generator(channel: Channel, self_url: str) -> FeedGenerator:
    _locale_free_dates()
    feed = FeedGenerator()
    feed.id(channel.atom_url)
    feed.title(channel.title)
    feed.description(channel.description)
    feed.subtitle(channel.description)
    feed.author({"name": channel.author_name, "uri": channel.author_uri})
    feed.link(href=self_url, rel="self", type=_MEDIA_TYPES[self_url.rsplit(".", 1)[-1]])
    feed.link(href=channel.link, rel="alternate", type="text/html")  # last: RSS takes the last link
    feed.language(channel.language)
    feed.updated(channel.updated)
    feed.ttl(channel.ttl)
    feed.generator("syndicator", __version__, GENERATOR_URI)
    return feed


_MEDIA_TYPES = {"rss": "application/rss+xml", "atom": "application/atom+xml"}


def _add(feed: FeedGenerator, channel: Channel, entry: Entry) -> None:
    item = entry.item
    # The parser keeps web links only; a store filled by an older version may hold others.
    attachments = [a for a in item.attachments if is_web_url(a.url)]
    links = [{"href": item.url, "rel": "alternate", "type": "text/html"}]
    links += [
        {"href": a.url, "rel": "enclosure", "type": a.mime_type or "application/octet-stream",
         "length": str(a.size_bytes or 0)}
        for a in attachments
    ]  # fmt: skip
    node = _Entry(links)
    feed.add_entry(node, order="append")
    node.id(item.url)
    node.guid(item.url, permalink=True)
    node.title(item.title)
    node.link(href=item.url, rel="alternate")
    summary = item.summary or item.title
    # RSS readers render description as HTML: the plain-text summary goes in escaped. The order
    # matters to feedgen: description() also sets Atom content, which content() then replaces.
    escaped = html.escape(summary, quote=False)
    node.description(escaped)
    node.content(item.body_html or escaped, type="html")
    node.summary(summary)  # Atom summary, type text
    node.published(entry.published)
    node.updated(entry.updated)
    for term in item.terms:
        node.category(term=term.name, scheme=f"{channel.category_scheme}{term.vocabulary}/", label=term.name)
    if attachments:
        first = attachments[0]
        node.enclosure(first.url, str(first.size_bytes or 0), first.mime_type or "application/octet-stream")


def build_rss(channel: Channel, entries: Sequence[Entry]) -> bytes:
    """The RSS 2.0 document of a feed, entries in the order given."""
    feed = _generator(channel, channel.rss_url)
    for entry in entries:
        _add(feed, channel, entry)
    return bytes(feed.rss_str(pretty=True))


def build_atom(channel: Channel, entries: Sequence[Entry]) -> bytes:
    """The Atom 1.0 document of a feed, entries in the order given."""
    feed = _generator(channel, channel.atom_url)
    for entry in entries:
        _add(feed, channel, entry)
    return bytes(feed.atom_str(pretty=True))

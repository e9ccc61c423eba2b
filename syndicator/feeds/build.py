"""Every feed of the site: which items each holds, its RSS and Atom files, the OPML and HTML indexes.

One feed for everything, one per thématique, territoire and type, under `feeds.output`:
`all.rss`, `thematiques/<slug>.atom`... A feed is rebuilt only when what it is built from changed
(its signature: the site settings and, for each of its items, URL, content hash and dates), and a
file is written only when its bytes change, through a temporary file renamed over the old one.
When nothing at all changed since the last run (one aggregate query says so), nothing is read.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import date, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment
from markupsafe import Markup

from syndicator.config.model import Config
from syndicator.db.store import ItemHeader, Store, StoredTerm
from syndicator.feeds.xml import Channel, Entry, build_atom, build_rss
from syndicator.files import public_folder, staged
from syndicator.i18n import N_
from syndicator.parsing.french_dates import localize
from syndicator.parsing.items import VOCABULARIES, Vocabulary
from syndicator.parsing.markup import is_web_url
from syndicator.privacy.notice import notice
from syndicator.templating import environment
from syndicator.typography import de, french_text

FORMAT = "2"  # bump when the output of this module or feedxml changes: every feed is rebuilt
INDEX_TEMPLATE = "feeds_index.html"
PAGE_TEMPLATES = (INDEX_TEMPLATE, "web/base.html")
LABELS: Mapping[Vocabulary, str] = {"thematiques": "Thématique", "territoires": "Territoire", "types": "Type"}
GROUP_TITLES: Mapping[Vocabulary, str] = {
    "thematiques": "Thématiques",
    "territoires": "Territoires",
    "types": "Types d’actualités",
}
ALL_NAME = "Toutes les actualités"


@dataclass(frozen=True, slots=True)
class FeedPlan:
    """One feed: what it is about, which items it shows, and the signature of all that."""

    stem: str  # path under feeds.output without extension: "all", "thematiques/sante"
    vocabulary: Vocabulary | None  # None for the feed of everything
    name: str
    channel: Channel
    entries: tuple[ItemHeader, ...]  # newest first, at most feeds.max_items
    count: int  # items of the term in all
    latest: date | None  # newest publication among them
    signature: str

    @property
    def files(self) -> tuple[str, str]:
        return f"{self.stem}.rss", f"{self.stem}.atom"


@dataclass(slots=True)
class FeedsReport:
    """Files written, left as they were, and removed by one update."""

    written: int = 0
    unchanged: int = 0
    removed: int = 0
    written_files: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return N_(
            "{written} written, {unchanged} unchanged, {removed} removed",
            written=self.written, unchanged=self.unchanged, removed=self.removed,
        )  # fmt: skip


def static_page(config: Config) -> dict[str, Any]:
    """What the web pages' layout gets beside `site` on a page no request made: no CSRF field
    to put; the RGPD notice, for the footer's link to it."""
    return {"request": None, "csrf_field": lambda: Markup(""), "privacy": notice(config)}


def _feeds_url(config: Config) -> str:
    return config.site.feeds_url.rstrip("/") + "/"


def published_at(header: ItemHeader, zone: ZoneInfo) -> datetime:
    """When a feed says an item was published, in `zone` (the site's): the start of its
    publication day there, else when the store saw it."""
    if header.published is None:
        return header.first_seen.astimezone(zone)
    return localize(header.published, None, zone)


def _newest(headers: Iterable[ItemHeader], limit: int, zone: ZoneInfo) -> list[ItemHeader]:
    """The `limit` newest items, newest first: publication day (the day the site saw them when
    they have none), then first seen, then URL."""
    return heapq.nlargest(
        limit,
        headers,
        key=lambda s: (s.published or s.first_seen.astimezone(zone).date(), s.first_seen, s.url),
    )


def _channel(config: Config, stem: str, vocabulary: Vocabulary | None, term: StoredTerm | None,
             entries: Sequence[ItemHeader]) -> Channel:  # fmt: skip
    site, base = config.site, _feeds_url(config)
    quoted, of_site = f"« {term.name} »" if term else "", de(site.title_article)
    if vocabulary is None or term is None:
        title, description = f"{site.title} — {ALL_NAME}", f"Toutes les actualités {of_site}"
    else:
        title = f"{site.title} — {LABELS[vocabulary]} : {term.name}"
        description = {
            "thematiques": f"Les actualités {of_site} sur la thématique {quoted}",
            "territoires": f"Les actualités {of_site} pour le territoire {quoted}",
            "types": f"Les actualités {of_site} de type {quoted}",
        }[vocabulary]
    # French spaces (only where a space is already written: a term's own words stay as they are).
    title, description = french_text(title), french_text(description)
    zone = site.zone
    updated = max((s.updated for s in entries), default=datetime(2000, 1, 1, tzinfo=zone)).astimezone(zone)
    return Channel(
        title=title,
        link=(term.url if term and term.url and is_web_url(term.url) else site.base_url),
        description=description,
        rss_url=f"{base}{stem}.rss",
        atom_url=f"{base}{stem}.atom",
        updated=updated,
        author_name=site.title,
        author_uri=site.base_url,
        category_scheme=base,
        language=site.language,
        ttl=config.feeds.ttl,
    )


def _signature(channel: Channel, entries: Sequence[ItemHeader], zone: ZoneInfo) -> str:
    data = [
        FORMAT,
        [str(getattr(channel, f.name)) for f in fields(channel)],
        [
            [s.url, s.content_hash, published_at(s, zone).isoformat(), s.updated.astimezone(zone).isoformat()]
            for s in entries
        ],
    ]
    return hashlib.sha256(json.dumps(data, ensure_ascii=False).encode()).hexdigest()


def plan_feeds(
    config: Config, headers: Sequence[ItemHeader], terms: dict[int, StoredTerm], slugs: dict[int, str]
) -> list[FeedPlan]:
    """Every feed the store calls for, in a stable order: everything, then each vocabulary."""
    limit, zone = config.feeds.max_items, config.site.zone
    members: dict[int, list[ItemHeader]] = {}
    for header in headers:
        for term_id in header.term_ids:
            members.setdefault(term_id, []).append(header)

    def plan(stem: str, vocabulary: Vocabulary | None, term: StoredTerm | None,
             items: Sequence[ItemHeader]) -> FeedPlan:  # fmt: skip
        entries = tuple(_newest(items, limit, zone))
        channel = _channel(config, stem, vocabulary, term, entries)
        return FeedPlan(
            stem=stem,
            vocabulary=vocabulary,
            name=term.name if term else ALL_NAME,
            channel=channel,
            entries=entries,
            count=len(items),
            latest=max((s.published for s in items if s.published), default=None),
            signature=_signature(channel, entries, zone),
        )

    plans = [plan("all", None, None, headers)] if headers else []
    for vocabulary in VOCABULARIES:
        chosen = sorted((t for t in terms.values() if t.vocabulary == vocabulary and t.id in members),
                        key=lambda t: slugs[t.id])  # fmt: skip
        plans += [plan(f"{vocabulary}/{slugs[t.id]}", vocabulary, t, members[t.id]) for t in chosen]
    return plans


def build_opml(config: Config, plans: Sequence[FeedPlan]) -> bytes:
    """OPML 2.0: one outline per feed (its RSS document), grouped by vocabulary."""
    opml = ET.Element("opml", version="2.0")
    head = ET.SubElement(opml, "head")
    ET.SubElement(head, "title").text = f"{config.site.title} — flux d'actualités"
    newest = max((p.channel.updated for p in plans), default=None)
    if newest is not None:
        ET.SubElement(head, "dateModified").text = format_datetime(newest)
    body = ET.SubElement(opml, "body")

    def outline(parent: ET.Element, plan: FeedPlan) -> None:
        ET.SubElement(parent, "outline", type="rss", text=plan.name, title=plan.channel.title,
                      xmlUrl=plan.channel.rss_url, htmlUrl=plan.channel.link)  # fmt: skip

    for plan in plans:
        if plan.vocabulary is None:
            outline(body, plan)
    for vocabulary in VOCABULARIES:
        group = [p for p in plans if p.vocabulary == vocabulary]
        if group:
            folder = ET.SubElement(body, "outline", text=GROUP_TITLES[vocabulary])
            for plan in group:
                outline(folder, plan)
    ET.indent(opml)
    document: bytes = ET.tostring(opml, encoding="UTF-8", xml_declaration=True)
    return document + b"\n"


def build_index(env: Environment, config: Config, plans: Sequence[FeedPlan]) -> bytes:
    """The French HTML page listing every feed, from the `feeds_index.html` template."""
    groups = [
        {"title": GROUP_TITLES[v], "feeds": [p for p in plans if p.vocabulary == v]} for v in VOCABULARIES
    ]
    main = next((p for p in plans if p.vocabulary is None), None)
    page = env.get_template(INDEX_TEMPLATE).render(
        site=config.site, main=main, groups=[g for g in groups if g["feeds"]], **static_page(config)
    )
    return page.encode("utf-8")


def write_atomic(path: Path, data: bytes) -> bool:
    """Write `data` to `path` through a renamed temporary file, unless it already holds it."""
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    public_folder(path.parent)
    with staged(path.parent, data, prefix=f".{path.name}.") as temporary:
        os.replace(temporary, path)
    return True


def _settings_hash(config: Config, env: Environment) -> str:
    # The index page and the layout it extends: a change to either rewrites the page.
    sources = [env.loader.get_source(env, name)[0] for name in PAGE_TEMPLATES] if env.loader else []
    settings = [FORMAT, config.site.model_dump_json(), config.feeds.model_dump_json(), *sources]
    return hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:16]


def update_feeds(store: Store, config: Config, *, env: Environment | None = None) -> FeedsReport:
    """Bring the files under `feeds.output` in line with the store, touching only what changed."""
    env = env or environment(config.templates_path, config.site.zone)
    output, zone = config.feeds_path, config.site.zone
    report = FeedsReport()
    known = store.feed_signatures()
    built_from = f"{store.items_version()}|{_settings_hash(config, env)}"  # items and settings
    index_files = ("index.opml", "index.html")
    if store.get_state("feeds.stamp") == built_from and all(
        (output / name).exists() for name in [*known, *index_files]
    ):
        report.unchanged = len(known) + len(index_files)
        return report

    headers = store.item_headers()
    terms = store.terms()
    slugs = store.assign_slugs({t for s in headers for t in s.term_ids})
    plans = plan_feeds(config, headers, terms, slugs)
    stale = {
        p.stem
        for p in plans
        if any(known.get(f) != p.signature or not (output / f).exists() for f in p.files)
    }
    loaded = store.items_by_id({s.id for p in plans if p.stem in stale for s in p.entries})
    signatures: dict[str, str] = {}
    for plan in plans:
        for name in plan.files:
            signatures[name] = plan.signature
        if plan.stem not in stale:
            report.unchanged += len(plan.files)
            continue
        entries = [
            Entry(loaded[s.id], published_at(s, zone), s.updated.astimezone(zone)) for s in plan.entries
        ]
        documents = (build_rss(plan.channel, entries), build_atom(plan.channel, entries))
        for name, data in zip(plan.files, documents, strict=True):
            _count(report, name, write_atomic(output / name, data))
    for name, data in (
        ("index.opml", build_opml(config, plans)),
        ("index.html", build_index(env, config, plans)),
    ):
        _count(report, name, write_atomic(output / name, data))
    removed = [name for name in known if name not in signatures]
    for name in removed:
        (output / name).unlink(missing_ok=True)
        report.removed += 1
    store.record_feeds(signatures, removed, built_from)
    return report


def _count(report: FeedsReport, name: str, written: bool) -> None:
    if written:
        report.written += 1
        report.written_files.append(name)
    else:
        report.unchanged += 1

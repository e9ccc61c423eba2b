"""A `Digest` rendered through the templates: a one-line subject, plain text, and HTML with inlined CSS.

Pure: no I/O beyond loading templates. The templates (`digest_subject.txt`, `digest.txt`,
`digest.html`, which admins may override) get ready-made French strings (dates, event dates,
attachment labels) so that they hold layout only. The subject and the text are rendered with
autoescape off; the HTML with it on, then its `<style>` block is inlined into `style=` attributes
(the `@media` rules stay in a `<style>` for the clients that read it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from posixpath import basename, splitext
from typing import Any
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

import css_inline
from babel.dates import format_date, format_time
from jinja2 import Environment

from .config import SiteConfig
from .digest import Digest, DigestLinks, RenderedDigest
from .items import Attachment, NewsItem
from .subscribers import Subscriber
from .templating import LOCALE, french_size

SUBJECT_TEMPLATE = "digest_subject.txt"
TEXT_TEMPLATE = "digest.txt"
HTML_TEMPLATE = "digest.html"
MAX_LINE = 998  # RFC 5322: no line of a message may be longer, whatever the template does

# How often the digest goes, completing "envoyée …".
FREQUENCIES = {
    "immediate": "à chaque nouvelle actualité",
    "daily": "chaque jour",
    "weekly": "chaque semaine",
    "monthly": "chaque mois",
}
# What a file is, when its URL's extension says little to a reader.
_KINDS = {
    "application/pdf": "PDF",
    "application/msword": "Word",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document": "Word",
    "application/vnd.ms-excel": "Excel",
    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": "Excel",
    "application/vnd.ms-powerpoint": "PowerPoint",
    "application/vnd.openxmlformats-officedocument.presentationml.presentation": "PowerPoint",
    "application/vnd.oasis.opendocument.text": "OpenDocument texte",
    "application/vnd.oasis.opendocument.spreadsheet": "OpenDocument tableur",
    "application/vnd.oasis.opendocument.presentation": "OpenDocument présentation",
    "application/zip": "ZIP",
}
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: none belongs in a header.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"[ \t]{2,}")
# Remote stylesheets are never fetched: the templates hold all their CSS, and rendering stays pure.
_INLINER = css_inline.CSSInliner(keep_at_rules=True, minify_css=True, load_remote_stylesheets=False)
_OWN_ENVS = "_syndicator_digest_envs"  # where an environment keeps its two variants (see _variants)


@dataclass(frozen=True, slots=True)
class AttachmentView:
    """An attachment as a reader sees it: `Pièce jointe : <url> (PDF, 1,8 Mo)`."""

    url: str
    name: str  # the file's name, decoded from its URL
    kind: str  # "PDF", "Word"…; empty when unknown
    size: str  # "1,8 Mo"; empty when unknown

    @property
    def label(self) -> str:
        """`PDF, 1,8 Mo`, or as much of it as is known."""
        return ", ".join(part for part in (self.kind, self.size) if part)


@dataclass(frozen=True, slots=True)
class EntryView:
    """One item of a digest, with its fields formatted in French."""

    item: NewsItem
    title: str
    url: str
    type: str  # the type of news; empty when unknown
    published: str  # "30 novembre 2021"; empty when unknown
    when: str  # "Le vendredi 19 novembre 2021 à 09:00", "Du … au …"; empty for news that is no event
    thematiques: tuple[str, ...]
    territoires: tuple[str, ...]
    summary: str
    attachments: tuple[AttachmentView, ...]


@dataclass(frozen=True, slots=True)
class SectionView:
    """One thématique of a digest and the items shown under it."""

    title: str
    entries: tuple[EntryView, ...]


def render_digest(env: Environment, digest: Digest, links: DigestLinks, site: SiteConfig) -> RenderedDigest:
    """The subject, text and HTML of `digest`, through the environment's templates."""
    text_env, html_env = _variants(env)
    context = digest_context(digest, links, site)
    subject = one_line(text_env.get_template(SUBJECT_TEMPLATE).render(context))
    text = _limit_lines(text_env.get_template(TEXT_TEMPLATE).render({**context, "subject": subject}))
    html = html_env.get_template(HTML_TEMPLATE).render({**context, "subject": subject})
    return RenderedDigest(subject=subject, text=text, html=inline_css(html))


def digest_context(digest: Digest, links: DigestLinks, site: SiteConfig) -> dict[str, Any]:
    """The variables every digest template sees (listed for template authors atop digest.html)."""
    zone = ZoneInfo(site.timezone)
    sections = tuple(
        SectionView(section.title, tuple(_entry(item, zone) for item in section.items))
        for section in digest.sections
    )
    shown = sum(len(section.entries) for section in sections)
    subscriber = digest.subscriber
    name = (subscriber.name or "").strip()
    return {
        "site": site,
        "links": links,
        "digest": digest,
        "subscriber": subscriber,
        "greeting": f"Bonjour {name}," if name else "Bonjour,",
        "count": len(digest.items),
        "shown": shown,
        "more": digest.more,
        "issued": french_day(digest.issued.astimezone(zone).date()),
        "sections": sections,
        "entries": tuple(entry for section in sections for entry in section.entries),
        "frequency": FREQUENCIES.get(subscriber.frequency, subscriber.frequency),
        "interests": interests(subscriber),
    }


def one_line(text: str) -> str:
    """`text` as a header value: controls and line breaks made spaces, runs of spaces squeezed."""
    return _SPACES.sub(" ", _CONTROLS.sub(" ", text)).strip()


def inline_css(html: str) -> str:
    """`html` with its `<style>` rules copied into `style=` attributes; at-rules (`@media`) kept."""
    return _INLINER.inline(html)


def french_day(day: date) -> str:
    """`1er décembre 2021`, `30 novembre 2021`: the French ordinal for the first of the month."""
    text = format_date(day, "d MMMM y", locale=LOCALE)
    return "1er" + text[1:] if day.day == 1 else text


def event_dates(start: datetime | None, end: datetime | None, zone: tzinfo) -> str:
    """An event's dates as a French sentence; a time of 00:00 means the website gave none."""
    if start is None:
        return f"Jusqu'au {_moment(end.astimezone(zone))}" if end is not None else ""
    start = start.astimezone(zone)
    if end is None or end == start:
        return f"Le {_moment(start)}"
    end = end.astimezone(zone)
    if start.date() == end.date():
        if _has_time(start) and _has_time(end):
            return f"Le {_weekday(start)}, de {_clock(start)} à {_clock(end)}"
        return f"Le {_moment(start)}"
    return f"Du {_moment(start)} au {_moment(end)}"


def interests(subscriber: Subscriber) -> str:
    """What the subscriber asked for: `thématique Éducation ; territoires Nord, Somme`."""
    parts = [
        f"{singular if len(names) == 1 else plural} {', '.join(names)}"
        for singular, plural, names in (
            ("thématique", "thématiques", subscriber.thematiques),
            ("territoire", "territoires", subscriber.territoires),
            ("type d'actualité", "types d'actualités", subscriber.types),
        )
        if names
    ]
    return " ; ".join(parts) if parts else "toutes les actualités"


def _variants(env: Environment) -> tuple[Environment, Environment]:
    """Two overlays of `env`, made once and kept on it: plain text (autoescape off), and HTML.

    Each has its own template cache, so a template compiled by `env` with other settings is
    never reused, and blocks take their own line ending and indentation away.
    """
    variants: tuple[Environment, Environment] | None = env.__dict__.get(_OWN_ENVS)
    if variants is None:
        options: dict[str, Any] = {"trim_blocks": True, "lstrip_blocks": True, "cache_size": 50}
        variants = (env.overlay(autoescape=False, **options), env.overlay(autoescape=True, **options))
        env.__dict__[_OWN_ENVS] = variants
    return variants


_ENTRIES: dict[tuple[int, str], tuple[NewsItem, EntryView]] = {}


def _entry(item: NewsItem, zone: tzinfo) -> EntryView:
    """An item's view, made once: an item looks the same in every digest it goes into. Keyed by
    the object's identity (hashing a whole item costs more than the view), kept with it."""
    key = (id(item), str(zone))
    cached = _ENTRIES.get(key)
    if cached is not None and cached[0] is item:
        return cached[1]
    if len(_ENTRIES) > 20_000:
        _ENTRIES.clear()
    view = _ENTRIES[key] = (item, _make_entry(item, zone))
    return view[1]


def _make_entry(item: NewsItem, zone: tzinfo) -> EntryView:
    return EntryView(
        item=item,
        title=item.title,
        url=item.url,
        type=item.type.name if item.type else "",
        published=french_day(item.published) if item.published else "",
        when=event_dates(item.event_start, item.event_end, zone),
        thematiques=tuple(t.name for t in item.thematiques),
        territoires=tuple(t.name for t in item.territoires),
        summary=item.summary,
        attachments=tuple(_attachment(a) for a in item.attachments),
    )


def _attachment(attachment: Attachment) -> AttachmentView:
    name = unquote(basename(urlsplit(attachment.url).path)) or attachment.url
    kind = _KINDS.get(attachment.mime_type or "") or splitext(name)[1].lstrip(".").upper()
    return AttachmentView(attachment.url, name, kind, french_size(attachment.size_bytes))


def _has_time(moment: datetime) -> bool:
    return (moment.hour, moment.minute) != (0, 0)


def _weekday(moment: datetime) -> str:
    return f"{format_date(moment, 'EEEE', locale=LOCALE)} {french_day(moment.date())}"


def _clock(moment: datetime) -> str:
    return format_time(moment, "HH:mm", locale=LOCALE)


def _moment(moment: datetime) -> str:
    """`vendredi 19 novembre 2021 à 09:00`, without the time at midnight."""
    return f"{_weekday(moment)} à {_clock(moment)}" if _has_time(moment) else _weekday(moment)


def _limit_lines(text: str) -> str:
    """`text` with no line longer than the RFC's limit, cut where it must be (only a huge URL would be)."""
    lines: list[str] = []
    for line in text.splitlines():
        rest = line if line == "-- " else line.rstrip()  # "-- " opens a signature: keep its space
        while len(rest) > MAX_LINE:
            lines.append(rest[:MAX_LINE])
            rest = rest[MAX_LINE:]
        lines.append(rest)
    return "\n".join(lines).strip("\n") + "\n"

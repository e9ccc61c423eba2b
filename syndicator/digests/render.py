"""A `Digest` rendered through the templates: a one-line subject, plain text, and HTML with inlined CSS.

Pure: no I/O beyond loading templates. The templates (`digest_subject.txt`, `digest.txt`,
`digest.html`, which admins may override) get ready-made French strings (dates, event dates,
attachment labels) so that they hold layout only. The subject and the text are rendered with
autoescape off; the HTML with it on, then its `<style>` block is inlined into `style=` attributes
(the `@media` rules stay in a `<style>` for the clients that read it).

An item looks the same in every digest it goes into, so the `entry` block of `digest.txt` and
`digest.html` is rendered once per item and template, and its inlined CSS kept: a digest then
renders only its own frame, with each entry's block put in its place (`_Layout`). The bytes are
those of rendering the whole template and inlining the whole page; a template whose `entry` block
uses more than `entry`, or whose CSS selects by position, is rendered whole for every digest.
"""

from __future__ import annotations

import logging
import re
import secrets
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, tzinfo
from functools import lru_cache
from posixpath import basename, splitext
from typing import Any
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

import css_inline
from babel.dates import format_date
from jinja2 import Environment, Template, meta, nodes, pass_context
from jinja2.filters import do_truncate
from jinja2.runtime import Context
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

from syndicator import typography
from syndicator.config.model import SiteConfig
from syndicator.config.subscribers import Subscriber
from syndicator.digests.select import Digest, DigestLinks
from syndicator.mail.messages import RenderedEmail, header_text
from syndicator.parsing.items import Attachment, NewsItem
from syndicator.parsing.markup import is_web_url
from syndicator.privacy.notice import Notice
from syndicator.templating import LOCALE, french_size

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
# Remote stylesheets are never fetched: the templates hold all their CSS, and rendering stays pure.
_INLINER = css_inline.CSSInliner(keep_at_rules=True, minify_css=True, load_remote_stylesheets=False)
_OWN_ENVS = "_syndicator_digest_envs"  # where an environment keeps its two variants (see _variants)
_OWN_LAYOUTS = "_syndicator_digest_layouts"  # where a variant keeps its templates' _Layout
_OWN_SUBJECT = "_syndicator_digest_subject"  # where the text variant keeps subjects made
_PER_RUN = frozenset({"site", "count", "shown", "more", "issued", "frequency"})  # values shared
ENTRY_BLOCK = "entry"  # the block of digest.txt and digest.html rendered once per item
_HOOK = "_syndicator_entry"  # what the frame calls in place of the entry block
# CSS that styles an element by its place among its siblings: an entry's inlined style could
# then differ from one digest to the next, so such a template is inlined whole every time.
_POSITIONAL_CSS = re.compile(r":(?:first|last|nth|only)-|:empty|:has\(|[+~]")
_STYLE = re.compile(r"<style[^>]*>(.*?)</style>", re.DOTALL | re.IGNORECASE)
_JINJA_COMMENT = re.compile(r"\{#.*?#\}", re.DOTALL)
_CHECKED = 2  # digests reusing kept entries that are also rendered whole and compared, per run
_KEPT = 20_000  # entries kept per template before the cache starts afresh

log = logging.getLogger(__name__)


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


def render_digest(
    env: Environment, digest: Digest, links: DigestLinks, site: SiteConfig, privacy: Notice | None = None
) -> RenderedEmail:
    """The subject, text and HTML of `digest`, through the environment's templates; `privacy`
    is the notice its footer carries."""
    text_env, html_env = _variants(env)
    context = digest_context(digest, links, site)
    context["privacy"] = privacy
    subject = _subject(text_env, context)
    context["subject"] = subject
    titles = " · ".join(entry.title for entry in context["entries"])
    context["preheader"] = do_truncate(html_env, titles, 140, end="…")  # as the filter would
    text = _limit_lines(_layout(text_env, TEXT_TEMPLATE).text(context))
    html = _layout(html_env, HTML_TEMPLATE).html(context)
    return RenderedEmail(subject=subject, text=text, html=html)


SAMPLE_SUBJECT = "Exemple — "
SAMPLE_NOTICE = (
    "Exemple : cette lettre montre les dernières actualités qui correspondent aux centres "
    "d’intérêt de l’abonné, même déjà envoyées ou anciennes. Elle n’a pas été envoyée."
)
_BODY = re.compile(r"<body\b[^>]*>", re.IGNORECASE)


def mark_sample(rendered: RenderedEmail) -> RenderedEmail:
    """A rendered digest marked as a sample (`digest preview` with nothing new): « Exemple » at
    the head of its subject, and a notice at the top of its text and of its HTML body. Done on
    the output, so that an admin's own templates get the mark too."""
    notice = f'<p style="background:#fff3cd;padding:8px;font-weight:bold">{SAMPLE_NOTICE}</p>'
    html = rendered.html
    body = _BODY.search(html)
    at = body.end() if body else 0
    return RenderedEmail(
        subject=SAMPLE_SUBJECT + rendered.subject,
        text=textwrap.fill(SAMPLE_NOTICE, 76) + "\n\n" + rendered.text,
        html=html[:at] + notice + html[at:],
    )


def digest_context(digest: Digest, links: DigestLinks, site: SiteConfig) -> dict[str, Any]:
    """The variables every digest template sees (listed for template authors atop digest.html)."""
    zone = ZoneInfo(site.timezone)
    sections = tuple(
        SectionView(section.title, tuple(_entry(item, zone) for item in section.items))
        for section in digest.sections
    )
    shown = sum(len(section.entries) for section in sections)
    subscriber = digest.subscriber
    name = header_text(subscriber.name or "")  # one line, as in the To header
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


def inline_css(html: str) -> str:
    """`html` with its `<style>` rules copied into `style=` attributes; at-rules (`@media`) kept."""
    return _INLINER.inline(html)


@lru_cache(maxsize=4096)
def french_day(day: date) -> str:
    """`1er décembre 2021`, `30 novembre 2021`: the French ordinal for the first of the month."""
    return typography.french_day(day)


def event_dates(start: datetime | None, end: datetime | None, zone: tzinfo) -> str:
    """An event's dates as a French sentence; a time of 00:00 means the website gave none."""
    if start is None:
        return f"Jusqu’au {_moment(end.astimezone(zone))}" if end is not None else ""
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
            ("type d’actualité", "types d’actualités", subscriber.types),
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
        # No look at the files' dates for each digest: a run makes its environment anew.
        options: dict[str, Any] = {
            "trim_blocks": True,
            "lstrip_blocks": True,
            "cache_size": 50,
            "auto_reload": False,
        }
        variants = (env.overlay(autoescape=False, **options), env.overlay(autoescape=True, **options))
        for variant in variants:  # their own filters, with the one frames call for each entry
            variant.filters = {**env.filters, _HOOK: _put_entry}
        env.__dict__[_OWN_ENVS] = variants
    return variants


@pass_context
def _put_entry(context: Context, entry: EntryView) -> Markup:
    """What a frame puts in place of the entry block: a filter, which Jinja calls directly."""
    put: Callable[[EntryView], Markup] = context[_HOOK]
    return put(entry)


@dataclass(slots=True)
class _Subjects:
    """The subject template, the variables it reads when all are the same for a whole run, and
    the subjects made, by their values."""

    template: Template
    uses: list[str] | None
    made: dict[tuple[Any, ...], tuple[Any, str]] = field(default_factory=dict)


def _subject(env: Environment, context: dict[str, Any]) -> str:
    """The subject template rendered on one line; made once for each set of the values it uses
    when these are the same for a whole run (site, count, date...), as the shipped one's are."""
    template = env.get_template(SUBJECT_TEMPLATE)
    kept: _Subjects | None = env.__dict__.get(_OWN_SUBJECT)
    if kept is None or kept.template is not template:
        uses = sorted(meta.find_undeclared_variables(env.parse(_source(env, SUBJECT_TEMPLATE))))
        kept = env.__dict__[_OWN_SUBJECT] = _Subjects(template, uses if _PER_RUN.issuperset(uses) else None)
    if kept.uses is None:
        return header_text(template.render(context))
    site = context["site"]  # a model, compared by identity: the run's own
    key = tuple(id(site) if name == "site" else context[name] for name in kept.uses)
    found = kept.made.get(key)
    if found is None or found[0] is not site:
        if len(kept.made) > _KEPT:
            kept.made.clear()
        found = kept.made[key] = (site, header_text(template.render(context)))
    return found[1]


def _source(env: Environment, name: str) -> str:
    assert env.loader is not None  # the template was loaded by it
    source: str = env.loader.get_source(env, name)[0]
    return source


def _layout(env: Environment, name: str) -> _Layout:
    """The `_Layout` of a template, kept on the environment; made anew when the file changed."""
    template = env.get_template(name)
    layouts: dict[str, _Layout] = env.__dict__.setdefault(_OWN_LAYOUTS, {})
    layout = layouts.get(name)
    if layout is None or layout.template is not template:
        layout = layouts[name] = _Layout(env, template)
    return layout


class _Layout:
    """A digest template whose `entry` block is rendered once per item (see the module doc).

    The frame is the template itself with the block replaced by a call (`_HOOK`). For the HTML,
    the frame is inlined with each new entry's block between two markers, so the block is
    inlined in its place on the page, and kept; an entry already kept is a single marker. Markers
    are HTML comments with a nonce no text can forge; they are gone from the result. The first
    digests that reuse kept entries are also rendered whole: should the two ever differ, this
    template is rendered whole from then on.

    Kept for bench/digests.py's target (choosing and rendering 10,000 subscribers' digests in
    under 20 s): 16.4 and 21.8 s with it (1.2–1.6 ms a digest rendered), 68.2 and 69.2 s
    rendering every template whole (6.0–6.2 ms a digest), the same bytes for all 9,979 digests."""

    def __init__(self, env: Environment, template: Template) -> None:
        self.template = template
        self.frame = _frame(env, template)
        self.nonce = secrets.token_hex(8)
        self.opening = f"<!--{self.nonce}:"
        self.blocks: dict[int, tuple[EntryView, Markup]] = {}
        self.inlined: dict[int, tuple[EntryView, Markup, str]] = {}  # its marker, its block
        self.checked = 0

    def text(self, context: dict[str, Any]) -> str:
        """The template rendered for `context`, entries from the kept blocks."""
        if self.frame is None:
            return self.template.render(context)
        return self.frame.render({**context, _HOOK: self.block})

    def html(self, context: dict[str, Any]) -> str:
        """The template rendered for `context` with its CSS inlined, as `inline_css` would give."""
        if self.frame is None:
            return inline_css(self.template.render(context))
        entries: list[EntryView] = []
        page = inline_css(self.frame.render({**context, _HOOK: self._placeholder(entries)}))
        html, reused = self._assemble(page, entries)
        if html is None or (reused and self.checked < _CHECKED):
            whole = inline_css(self.template.render(context))
            if html != whole:
                log.warning("%s: entries inlined apart differ; rendering it whole", self.template.name)
                self.frame = None
                return whole
            self.checked += 1
        return html

    def block(self, entry: EntryView) -> Markup:
        """The entry block rendered for `entry` alone, made once."""
        kept = self.blocks.get(id(entry))
        if kept is not None and kept[0] is entry:
            return kept[1]
        if len(self.blocks) > _KEPT:
            self.blocks.clear()
        context = self.template.new_context({"entry": entry})
        rendered = Markup("".join(self.template.blocks[ENTRY_BLOCK](context)))
        self.blocks[id(entry)] = (entry, rendered)
        return rendered

    def _placeholder(self, entries: list[EntryView]) -> Callable[[EntryView], Markup]:
        """What the frame puts for each entry: a marker naming it, around its block when it is
        new. An entry is named by its `id()`, which no other has while it is kept."""
        inlined = self.inlined

        def placeholder(entry: EntryView) -> Markup:
            entries.append(entry)
            kept = inlined.get(id(entry))
            if kept is not None and kept[0] is entry:
                return kept[1]
            mark = f"{self.opening}{id(entry)}"
            return Markup(f"{mark}:start-->") + self.block(entry) + Markup(f"{mark}:end-->")

        return placeholder

    def _assemble(self, page: str, entries: list[EntryView]) -> tuple[str | None, bool]:
        """The inlined page with each marker replaced by its entry's inlined block (new ones kept
        for the next digests), and whether a kept block was reused; None for the page if the
        markers are not all there, in order, as they were put."""
        first, *marked = page.split(self.opening)  # each "<id>-->…", "<id>:start-->…", "<id>:end-->…"
        pieces, found = [first], []
        reused, opened, expected = False, False, 0  # expected: the position of the next entry
        for text in marked:
            mark, arrow, rest = text.partition("-->")
            number, _, kind = mark.partition(":")
            at = expected - (kind == "end")
            if not arrow or at >= len(entries) or number != str(id(entries[at])):
                return None, reused
            if kind == "end" and opened:
                opened = False
            elif kind == "start" and not opened:
                opened = True
                found.append((entries[expected], rest))  # rest: the block, up to its end marker
                expected += 1
            elif not kind and not opened:
                pieces.append(self.inlined[id(entries[expected])][2])
                reused = True
                expected += 1
            else:
                return None, reused
            pieces.append(rest)
        if opened or expected != len(entries):
            return None, reused
        if len(self.inlined) > _KEPT:
            self.inlined.clear()
        for entry, block in found:
            self.inlined[id(entry)] = (entry, Markup(f"{self.opening}{id(entry)}-->"), block)
        return "".join(pieces), reused


def _frame(env: Environment, template: Template) -> Template | None:
    """`template` with its entry block replaced by `entry | _HOOK`, compiled from its
    syntax tree; None when the template has no such block, extends another, has its block use
    more than `entry` (it is rendered once for every digest), or has CSS selecting by position."""
    if ENTRY_BLOCK not in template.blocks or template.name is None or env.loader is None:
        return None
    source = _source(env, template.name)
    if any(_POSITIONAL_CSS.search(css) for css in _STYLE.findall(_JINJA_COMMENT.sub("", source))):
        return None
    tree = env.parse(source, template.name)
    if tree.find(nodes.Extends) is not None:
        return None
    for block in tree.find_all(nodes.Block):
        if block.name == ENTRY_BLOCK:
            body = nodes.Template(block.body, lineno=block.lineno)
            body.set_environment(env)
            if meta.find_undeclared_variables(body) - {"entry"}:
                return None
    return env.from_string(_HookInPlace().visit(tree))


class _HookInPlace(NodeTransformer):
    """Puts `{{ entry | _HOOK }}` where the entry block was, with nothing around it: no block
    call, no context made for each entry."""

    def visit_Block(self, node: nodes.Block) -> nodes.Node:
        if node.name != ENTRY_BLOCK:
            return self.generic_visit(node)
        put = nodes.Filter(nodes.Name("entry", "load"), _HOOK, [], [], None, None)
        return nodes.Output([put], lineno=node.lineno)


_ENTRIES: dict[tuple[int, tzinfo], tuple[NewsItem, EntryView]] = {}


def _entry(item: NewsItem, zone: tzinfo) -> EntryView:
    """An item's view, made once: an item looks the same in every digest it goes into. Keyed by
    the object's identity (hashing a whole item costs more than the view), kept with it."""
    key = (id(item), zone)
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
        attachments=tuple(_attachment(a) for a in item.attachments if is_web_url(a.url)),
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
    return typography.french_time(moment.time())


def _moment(moment: datetime) -> str:
    """`vendredi 19 novembre 2021 à 9 h`, without the time at midnight."""
    return f"{_weekday(moment)} à {_clock(moment)}" if _has_time(moment) else _weekday(moment)


def _limit_lines(text: str) -> str:
    """`text` with no line longer than the RFC's limit, cut where it must be (only a huge URL would
    be), without spaces at line ends, and ending with one line break."""
    lines = text.splitlines()
    kept = list(map(str.rstrip, lines))  # each step over every line runs in C: no loop here
    at = -1
    while "--" in kept[at + 1 :]:
        at = kept.index("--", at + 1)
        if lines[at] == "-- ":
            kept[at] = "-- "  # it opens a signature: it keeps its space
    if max(map(len, kept), default=0) > MAX_LINE:
        kept = [line[i : i + MAX_LINE] for line in kept for i in range(0, len(line) or 1, MAX_LINE)]
    return "\n".join(kept).strip("\n") + "\n"

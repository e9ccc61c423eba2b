"""The `NewsItem` value type and the parser of item files, the one place that knows their format.

An item file, as the IREV website exports it: body paragraphs, a footer of fields
(`Poids :`, `Type d'actualites:`, `Dates:`, `Thématiques:`, `Territoires :`, `Publié le`,
`URL de la source (modifié le dd/mm/yyyy - hh:mm): <url>`), then `Liens` and the numbered URLs
that `[text](#) [N]` links point at. Only the source URL is required; it is the item's identity.
Fields that are present but unreadable are dropped with a warning, so one typo never loses an item.
"""

from __future__ import annotations

import mimetypes
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit
from zoneinfo import ZoneInfo

from syndicator.errors import ItemError, Problem
from syndicator.i18n import N_, text_of
from syndicator.parsing.french_dates import (
    DEFAULT_ZONE,
    DateSyntaxError,
    parse_date,
    parse_event,
    parse_modified,
)
from syndicator.parsing.markup import absolute, is_script_url, is_web_url, render, resolve_links, summarize
from syndicator.parsing.titles import restore_title

# The largest item file read, in bytes, unless config.yaml says otherwise (`items.max_size`):
# parsing takes about a second a megabyte of the worst text, and memory thirty times its size.
MAX_SIZE = 2 * 1024 * 1024
Vocabulary = Literal["thematiques", "territoires", "types"]
VOCABULARIES: tuple[Vocabulary, ...] = ("thematiques", "territoires", "types")


@dataclass(frozen=True, slots=True)
class Term:
    """A taxonomy term as an item names it, with the URL of its page on the website."""

    vocabulary: Vocabulary
    name: str
    url: str | None = None


@dataclass(frozen=True, slots=True)
class Attachment:
    """A downloadable file attached to an item."""

    url: str
    size_bytes: int | None = None
    mime_type: str | None = None


@dataclass(frozen=True, slots=True)
class NewsItem:
    """One news item, as parsed from its file. Datetimes are aware, in the site's zone."""

    url: str
    file: str
    title: str
    type: Term | None = None
    thematiques: tuple[Term, ...] = ()
    territoires: tuple[Term, ...] = ()
    published: date | None = None
    modified: datetime | None = None
    event_start: datetime | None = None
    event_end: datetime | None = None
    attachments: tuple[Attachment, ...] = ()
    summary: str = ""
    body_html: str = ""

    @property
    def id(self) -> str:
        """The item's identity: its source URL."""
        return self.url

    @property
    def terms(self) -> tuple[Term, ...]:
        """Every term of the item: its type, thématiques and territoires."""
        return ((self.type,) if self.type else ()) + self.thematiques + self.territoires

    def to_json(self) -> dict[str, Any]:
        """The item in the shape `syndicator parse --json` prints (docs/architecture.md, JSON shapes)."""
        return {
            "id": self.url,
            "url": self.url,
            "file": self.file,
            "title": self.title,
            "type": self.type.name if self.type else None,
            "thematiques": [t.name for t in self.thematiques],
            "territoires": [t.name for t in self.territoires],
            "published": self.published.isoformat() if self.published else None,
            "modified": _iso(self.modified),
            "event_start": _iso(self.event_start),
            "event_end": _iso(self.event_end),
            "attachments": [
                {"url": a.url, "size_bytes": a.size_bytes, "mime_type": a.mime_type} for a in self.attachments
            ],
            "summary": self.summary,
            "body_html": self.body_html,
        }


@dataclass(frozen=True, slots=True)
class ParsedItem:
    """A parsed item with the warnings about fields that were present but could not be read."""

    item: NewsItem
    warnings: tuple[Problem, ...] = field(default=())
    source_line: int | None = None


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


# Characters XML 1.0 forbids; feeds and emails could not carry them.
_XML_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

_LINK_REF = re.compile(r"^\[(?P<n>\d+)\]\s*<?(?P<url>[^\s<>]*)>?\s*$")
_MD_LINK = re.compile(r"\[(?P<text>[^\[\]\n]*)\]\((?P<target>[^()\s]*)\)(?:[ \t]*\[(?P<ref>\d+)\])?")
# A heading's closing `#`s are stripped apart: `.+?\s*#*$` would take quadratic time.
_TITLE = re.compile(r"^(?:#\s+(?P<heading>.+)|Titre\s*:\s*(?P<field>.+))$", re.IGNORECASE)
_FIELDS: dict[str, re.Pattern[str]] = {
    "size": re.compile(
        r"^Poids\s*:\s*(?P<number>\d+(?:[.,]\d+)?)\s*(?P<unit>octets?|o|ko|kio|kb|mo|mio|mb|go|gio|gb)\.?$",
        re.IGNORECASE,
    ),
    "download": re.compile(r"^\[\s*T[ée]l[ée]chargement\s*\]", re.IGNORECASE),
    "types": re.compile(r"^Types?\s+d['’]\s*actualit[ée]s?\s*:\s*(?P<value>.*)$", re.IGNORECASE),
    "dates": re.compile(r"^Dates?\s*:\s*(?P<value>.*)$", re.IGNORECASE),
    "thematiques": re.compile(r"^Th[ée]matiques?\s*:\s*(?P<value>.*)$", re.IGNORECASE),
    "territoires": re.compile(r"^Territoires?\s*:\s*(?P<value>.*)$", re.IGNORECASE),
    "published": re.compile(r"^Publi[ée]e?\s+le\s*:?\s*(?P<value>.*)$", re.IGNORECASE),
    "source": re.compile(
        r"^URL\s+de\s+la\s+source\s*(?:\((?:\s*modifi[ée]e?\s+le\s*)?(?P<modified>[^)]*)\))?\s*:\s*"
        r"<?(?P<url>[^\s<>]*)>?\s*$",
        re.IGNORECASE,
    ),
}
# The patterns a line may match, by its first character: a body line tries two at most.
_FIELDS_BY_INITIAL: dict[str, list[tuple[str, re.Pattern[str]]]] = {}
for _name, _initials in {
    "size": "Pp",
    "download": "[",
    "types": "Tt",
    "dates": "Dd",
    "thematiques": "Tt",
    "territoires": "Tt",
    "published": "Pp",
    "source": "Uu",
}.items():
    for _initial in _initials:
        _FIELDS_BY_INITIAL.setdefault(_initial, []).append((_name, _FIELDS[_name]))
_UNITS = {"o": 1, "octet": 1, "octets": 1}
_UNITS |= dict.fromkeys(("ko", "kio", "kb"), 1024)
_UNITS |= dict.fromkeys(("mo", "mio", "mb"), 1024**2)
_UNITS |= dict.fromkeys(("go", "gio", "gb"), 1024**3)

_MIME = mimetypes.MimeTypes(filenames=())  # the built-in table only: the same on every machine
for _ext, _type in {
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    ".pptx": "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    ".odt": "application/vnd.oasis.opendocument.text",
    ".ods": "application/vnd.oasis.opendocument.spreadsheet",
    ".odp": "application/vnd.oasis.opendocument.presentation",
    ".epub": "application/epub+zip",
    ".webp": "image/webp",
}.items():
    _MIME.add_type(_type, _ext)


def mime_type(url: str) -> str | None:
    """The MIME type of a file from its URL's extension, None when unknown."""
    return _MIME.guess_type(urlsplit(url).path)[0]


def size_in_bytes(number: str, unit: str) -> int:
    """`1.8` `Mo` → bytes, 1 Ko being 1024 octets; a decimal comma is accepted."""
    exact = Decimal(number.replace(",", ".")) * _UNITS[unit.lower()]
    return int(exact.to_integral_value(rounding=ROUND_HALF_UP))


# The control characters among them. Looking for these with bytes.translate costs a few
# instructions a byte; the regex above costs about fifty a character, on every body twice.
_FORBIDDEN_CONTROLS = bytes([*range(0x09), 0x0B, 0x0C, *range(0x0E, 0x20)])


def xml_safe(text: str) -> str:
    """`text` without the characters XML 1.0 forbids."""
    try:
        data = text.encode()
    except UnicodeEncodeError:  # a lone surrogate
        return _XML_FORBIDDEN.sub("", text)
    controls = len(data.translate(None, _FORBIDDEN_CONTROLS)) != len(data)
    if controls or "\ufffe" in text or "\uffff" in text:
        return _XML_FORBIDDEN.sub("", text)
    return text


def decode(data: bytes, path: str) -> str:
    """The text of an item file: UTF-8 with or without BOM, any line endings, XML-safe."""
    if not data.strip():
        raise ItemError(N_("empty file, not an item"), path=path, line=1)
    if b"\x00" in data:
        line = data.count(b"\n", 0, data.index(b"\x00")) + 1
        raise ItemError(N_("binary file, not an item (it holds NUL bytes)"), path=path, line=line)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ItemError(
            N_("not UTF-8 text (byte 0x{byte:02x}); save the file as UTF-8", byte=data[exc.start]),
            path=path,
            line=line,
        ) from None
    return text


def _normalize(text: str) -> list[str]:
    text = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    return xml_safe(text).split("\n")


def _links_section(lines: list[str]) -> tuple[int, dict[int, str]]:
    """Where the `Liens` section starts (len(lines) if absent) and its numbered URLs."""
    for start in range(len(lines) - 1, -1, -1):
        if lines[start].strip().rstrip(" :") == "Liens":
            links = {}
            for line in lines[start + 1 :]:
                if match := _LINK_REF.match(line.strip()):
                    links[int(match["n"])] = match["url"]
            return start, links
    return len(lines), {}


class _Footer:
    """The footer fields of one file, with the line each came from."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.values: dict[str, tuple[int, re.Match[str]]] = {}
        self.sizes: list[tuple[int, re.Match[str]]] = []
        self.downloads: list[tuple[int, str]] = []
        self.warnings: list[Problem] = []

    def warn(self, line: int, message: str) -> None:
        self.warnings.append(Problem(self.path, line, message, "warning"))

    def take(self, number: int, line: str) -> bool:
        """Record `line` if it is a footer field; False when it belongs to the body."""
        stripped = line.strip()
        for name, pattern in _FIELDS_BY_INITIAL.get(stripped[:1], ()):
            match = pattern.match(stripped)
            if match is None:
                continue
            if name == "size":
                self.sizes.append((number, match))
            elif name == "download":
                self.downloads.append((number, stripped))
            elif name in self.values:
                self.warn(number, N_("second '{field}' line ignored", field=stripped.split(":")[0].strip()))
            else:
                self.values[name] = (number, match)
            return True
        return False


def _is_cruft(line: str, links: dict[int, str]) -> bool:
    """A line holding nothing but website chrome links (`[Favoris +](#) [2]`)."""
    if "[" not in line:
        return False
    rest = _MD_LINK.sub("", line).strip()
    return not rest and bool(_MD_LINK.search(line)) and resolve_links(line, links, "").strip() == ""


def _terms(vocabulary: Vocabulary, footer: _Footer, links: dict[int, str], base: str) -> tuple[Term, ...]:
    number, field_match = footer.values[vocabulary]
    value = field_match["value"]
    found: list[Term] = []
    matches = list(_MD_LINK.finditer(value))
    if matches:
        for match in matches:
            target, ref = match["target"], match["ref"]
            url = target if target not in ("", "#") else links.get(int(ref)) if ref else None
            name = " ".join(match["text"].split())
            url = absolute(url, base) if url and not is_script_url(url) else None
            if url and not is_web_url(url):
                footer.warn(
                    number,
                    N_(
                        "the page of {name!r} is not a web link ({url}); term kept without it",
                        name=name,
                        url=_shown(url),
                    ),
                )
                url = None
            found.append(Term(vocabulary, name, url))
    else:
        found = [Term(vocabulary, " ".join(n.split())) for n in re.split(r"[,;]", value)]
    unique: dict[str, Term] = {}
    for term in found:
        if term.name and term.name not in unique:
            unique[term.name] = term
    return tuple(unique.values())


def _source(footer: _Footer, zone: ZoneInfo) -> tuple[str, datetime | None]:
    if "source" not in footer.values:
        raise ItemError(
            N_(
                "no source URL, so this is not an item; expected a line like "
                "'URL de la source (modifié le 30/11/2021 - 11:29): <https://…>'"
            ),
            path=footer.path,
            line=1,
        )
    number, match = footer.values["source"]
    url = match["url"]
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise ItemError(
            N_("the source URL {url!r} is not an http(s) URL; it identifies the item, fix it", url=url),
            path=footer.path,
            line=number,
        )
    modified = None
    if stamp := (match["modified"] or "").strip():
        try:
            modified = parse_modified(stamp, zone)
        except DateSyntaxError as exc:
            footer.warn(
                number, N_("modification date ignored: {why} (expected dd/mm/yyyy - hh:mm)", why=text_of(exc))
            )
    return url, modified


# The largest size a database integer holds: a larger `Poids` is a typo, not a file.
_MAX_BYTES = 2**63 - 1


def _size(footer: _Footer, number: int, match: re.Match[str]) -> int | None:
    size = size_in_bytes(match["number"], match["unit"])
    if size > _MAX_BYTES:
        footer.warn(number, N_("'Poids' larger than any file; size ignored"))
        return None
    return size


def _attachments(footer: _Footer, links: dict[int, str], base: str) -> tuple[Attachment, ...]:
    """Download links with their sizes: paired in order when there are as many of each, else
    each link takes the `Poids` lines just before it (the website writes them in that order)."""
    sizes = list(footer.sizes)
    in_order = len(sizes) == len(footer.downloads)
    found = []
    for number, line in footer.downloads:
        match = _MD_LINK.search(line)
        ref, target = (match["ref"], match["target"]) if match else (None, "")
        url = target if target not in ("", "#") else links.get(int(ref)) if ref else None
        size = None
        if in_order:
            size = _size(footer, *sizes.pop(0))
        while not in_order and sizes and sizes[0][0] < number:
            size = _size(footer, *sizes.pop(0))
        if not url:
            footer.warn(number, N_("download link without a URL in 'Liens'; attachment ignored"))
            continue
        url = absolute(url, base)
        if not is_web_url(url):
            footer.warn(
                number,
                N_(
                    "download link {url} is not a web link (http or https); attachment ignored",
                    url=_shown(url),
                ),
            )
            continue
        found.append(Attachment(url, size, mime_type(url)))
    for number, _ in sizes:
        footer.warn(number, N_("'Poids' without a following '[Téléchargement]' link; ignored"))
    return tuple(found)


def _shown(url: str) -> str:
    """A URL quoted for a message, cut short: it may be long, and anything but a URL."""
    return repr(url if len(url) <= 80 else url[:79] + "…")


def _slug(url: str) -> str:
    segments = [s for s in urlsplit(url).path.split("/") if s]
    return unquote(segments[-1]).rsplit(".", 1)[0] if segments else ""


def parse_text(text: str, path: str, zone: ZoneInfo = DEFAULT_ZONE) -> ParsedItem:
    """Parse the text of one item file, its dates being in `zone` (the site's); raise
    `ItemError` if it is not an item."""
    lines = _normalize(text)
    if not "".join(lines).strip():
        raise ItemError(N_("empty file, not an item"), path=path, line=1)
    links_start, links = _links_section(lines)
    footer = _Footer(path)
    explicit_title = None
    body: list[str] = []
    for index, line in enumerate(lines[:links_start]):
        if not line or line.isspace():  # half the lines: neither title, field nor cruft
            body.append(line)
            continue
        if explicit_title is None and not body and (match := _TITLE.match(line.strip())):
            heading = match["heading"]
            if heading is not None:  # what `.+?\s*#*$` would keep
                heading = heading.rstrip("#").rstrip() or heading[0]
            explicit_title = (heading or match["field"]).strip().strip("*_ ")
            continue
        if not footer.take(index + 1, line) and not _is_cruft(line, links):
            body.append(line)
    url, modified = _source(footer, zone)
    source_line = footer.values["source"][0]

    rendered = render(resolve_links("\n".join(body), links, url), url)
    item_type, event_start, event_end, published = None, None, None, None
    vocab: dict[str, tuple[Term, ...]] = {}
    for name in VOCABULARIES:
        if name in footer.values:
            number, match = footer.values[name]
            vocab[name] = _terms(name, footer, links, url)
            if not vocab[name]:
                footer.warn(number, N_("no term on the '{name}' line", name=name))
    if types := vocab.get("types"):
        item_type = types[0]
        if len(types) > 1:
            footer.warn(
                footer.values["types"][0],
                N_("several types; the first, {name!r}, is kept", name=types[0].name),
            )
    if "dates" in footer.values:
        number, match = footer.values["dates"]
        try:
            event_start, event_end = parse_event(match["value"], zone)
        except DateSyntaxError as exc:
            footer.warn(number, N_("event date ignored: {why}", why=text_of(exc)))
    if "published" in footer.values:
        number, match = footer.values["published"]
        try:
            published = parse_date(match["value"])
        except DateSyntaxError as exc:
            footer.warn(number, N_("publication date ignored: {why}", why=text_of(exc)))
    attachments = _attachments(footer, links, url)

    slug = _slug(url)
    if explicit_title:
        title = explicit_title
    elif re.search(r"[^\W\d_]", slug):
        title = restore_title(slug, "\n\n".join(rendered.paragraphs))
    else:
        title = summarize(rendered.paragraphs[0], 80) if rendered.paragraphs else url
    item = NewsItem(
        url=url,
        file=path,
        title=xml_safe(" ".join(title.split())),
        type=item_type,
        thematiques=vocab.get("thematiques", ()),
        territoires=vocab.get("territoires", ()),
        published=published,
        modified=modified,
        event_start=event_start,
        event_end=event_end,
        attachments=attachments,
        summary=xml_safe(summarize(rendered.paragraphs[0])) if rendered.paragraphs else "",
        body_html=xml_safe(rendered.html),
    )
    return ParsedItem(item, tuple(footer.warnings), source_line)


def parse_bytes(data: bytes, path: str, zone: ZoneInfo = DEFAULT_ZONE) -> ParsedItem:
    """Parse the raw bytes of one item file, its dates being in `zone`."""
    return parse_text(decode(data, path), path, zone)


def parse_file(path: Path | str, max_size: int = MAX_SIZE, zone: ZoneInfo = DEFAULT_ZONE) -> ParsedItem:
    """Read and parse one item file, its dates being in `zone` (the site's); raise `ItemError`
    naming it when it is not an item, or when it is larger than `max_size` bytes (read no
    further than that)."""
    name = str(path)
    try:
        with open(path, "rb") as file:  # not Path.read_bytes: a Path costs more than the read
            data = file.read(max_size + 1)
    except OSError as exc:
        raise ItemError(N_("cannot read: {why}", why=exc.strerror or exc), path=name, line=None) from None
    if len(data) > max_size:
        line = data.count(b"\n", 0, max_size) + 1
        raise ItemError(
            N_(
                "larger than items.max_size ({size:,} bytes), so not read; an item is a few "
                "kilobytes: check that this is the right file, else raise items.max_size in config.yaml",
                size=max_size,
            ),
            path=name,
            line=line,
        )
    return parse_bytes(data, name, zone)

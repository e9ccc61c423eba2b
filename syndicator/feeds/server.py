"""The generated feeds folder over HTTP, for feed readers: conditional GET, gzip, cached bytes.

`feeds_app(config)` is a bare ASGI app, mounted by the web app at `/feeds`, serving the files of
`feeds.output` as they are: `/all.rss`, `/thematiques/<slug>.atom`, `/index.opml`, and
`index.html` at `/`. Feed readers poll often and mostly ask "has it changed?", so the answer to
that must cost next to nothing: each file is read once per version (its device, inode, mtime and
size, checked with one `stat` a request, so the daemon's atomic rewrites show at the next
request), and everything a response needs is computed then and kept: the bytes, their gzip
form, a strong ETag from a hash of the bytes (`-gz` added for the gzip form), Last-Modified
from the document's own date (`lastBuildDate`, `updated`, `dateModified`: the newest item),
and the header lists of the 200 and the 304.

Conditional requests follow RFC 9110 §13: If-None-Match (weak comparison, lists, `*`) wins
over If-Modified-Since. Only names with a feed extension, without hidden or empty segments, and
resolving inside the folder are served; anything else gets the French 404 page, in the web
pages' layout (`web/error.html`), linking to the index under `web.base_url`'s path (a site
published at `https://x.org/lettre/` links to `/lettre/feeds/`).
"""

from __future__ import annotations

import gzip
import hashlib
import os
import stat
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import formatdate, parsedate_to_datetime
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
from lxml import etree
from starlette.types import ASGIApp, Receive, Scope, Send

from syndicator.config.model import Config
from syndicator.feeds.build import static_page
from syndicator.templating import environment

INDEX = "index.html"
MEDIA_TYPES = {
    ".rss": b"application/rss+xml; charset=utf-8",
    ".atom": b"application/atom+xml; charset=utf-8",
    ".opml": b"text/x-opml; charset=utf-8",
    ".html": b"text/html; charset=utf-8",
}
# Where each kind of document says when its newest item was updated.
DATE_PATHS = {
    ".rss": ("channel/lastBuildDate", "channel/pubDate"),
    ".atom": ("{http://www.w3.org/2005/Atom}updated",),
    ".opml": ("head/dateModified",),
}
ALLOWED = b"GET, HEAD"
HTML_TYPE = b"text/html; charset=utf-8"
# A browser must take a feed for what its Content-Type says, never sniff it into a page.
NOSNIFF = (b"x-content-type-options", b"nosniff")
NOT_FOUND = ("Flux introuvable", "Il n’y a pas de flux à cette adresse.")
NOT_ALLOWED_PAGE = (
    '<!DOCTYPE html>\n<html lang="fr">\n<head>\n<meta charset="utf-8">\n'
    "<title>Méthode non autorisée</title>\n</head>\n<body>\n<main>\n"
    "<h1>Méthode non autorisée</h1>\n<p>Les flux se lisent seulement (GET ou HEAD).</p>\n"
    "</main>\n</body>\n</html>\n"
).encode()

Headers = list[tuple[bytes, bytes]]
FileKey = tuple[int, int, int, int]  # st_dev, st_ino, st_mtime_ns, st_size


@dataclass(frozen=True, slots=True)
class Variant:
    """One encoding of a file, with the headers of its 200 and of its 304 ready to send."""

    etag: bytes  # quoted, as in the header
    body: bytes
    headers: Headers
    not_modified: Headers


@dataclass(frozen=True, slots=True)
class CachedFile:
    """One version of a file, as served."""

    key: FileKey
    last_modified: int  # seconds since the epoch
    last_modified_header: bytes
    identity: Variant
    gzip: Variant | None  # None when gzip would not make it smaller


# --- pure parts: names, dates, request headers --------------------------------------------------


def file_name(route_path: str) -> str | None:
    """The file a path under the mount names (`/` is the index page), or None when it names
    nothing that may be served: an unknown extension, a hidden, empty, `.` or `..` segment."""
    if route_path in ("", "/"):
        return INDEX
    if not route_path.startswith("/"):
        return None
    parts = route_path[1:].split("/")
    for part in parts:
        if not part or part.startswith(".") or "\\" in part or "\x00" in part:
            return None
    name = "/".join(parts)
    return name if os.path.splitext(name)[1] in MEDIA_TYPES else None


def document_date(extension: str, data: bytes) -> datetime | None:
    """The date a feed or OPML document gives itself (its newest item's), None if it has none."""
    paths = DATE_PATHS.get(extension)
    if not paths:
        return None
    try:
        root = etree.fromstring(data, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError:
        return None
    for path in paths:
        text = root.findtext(path)
        if not text:
            continue
        try:
            found = (
                datetime.fromisoformat(text.strip())
                if extension == ".atom"
                else parsedate_to_datetime(text.strip())
            )
        except (TypeError, ValueError):
            continue
        return found if found.tzinfo else found.replace(tzinfo=UTC)
    return None


def _etag_tags(header: bytes) -> Iterable[bytes]:
    for element in header.split(b","):
        tag = element.strip()
        yield tag[2:] if tag.startswith(b"W/") else tag


def etag_matches(header: bytes, etag: bytes) -> bool:
    """Whether an If-None-Match value matches `etag`: `*`, or one of its list, compared weakly
    (RFC 9110 §13.1.2: a `W/` prefix on either side does not matter)."""
    if header == etag:
        return True
    return any(tag in (b"*", etag) for tag in _etag_tags(header))


@lru_cache(maxsize=256)
def accepts_gzip(header: bytes) -> bool:
    """Whether an Accept-Encoding value accepts gzip: named (or `x-gzip`, or `*`) with q > 0."""
    named: float | None = None
    star: float | None = None
    for element in header.lower().split(b","):
        coding, _, params = element.partition(b";")
        quality = 1.0
        for param in params.split(b";"):
            key, _, value = param.strip().partition(b"=")
            if key == b"q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        coding = coding.strip()
        if coding in (b"gzip", b"x-gzip"):
            named = quality if named is None else max(named, quality)
        elif coding == b"*":
            star = quality
    if named is not None:
        return named > 0
    return star is not None and star > 0


@lru_cache(maxsize=256)
def http_date(header: bytes) -> int | None:
    """An HTTP date (any of RFC 9110's three forms) in seconds since the epoch, None if invalid."""
    try:
        parsed = parsedate_to_datetime(header.decode("latin-1"))
    except (TypeError, ValueError, IndexError):
        return None
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp())


def _variant(body: bytes, etag: bytes, common: Headers, media_type: bytes, encoded: bool) -> Variant:
    not_modified: Headers = [(b"etag", etag), *common]
    headers: Headers = [
        (b"content-type", media_type),
        (b"content-length", str(len(body)).encode()),
        *not_modified,
    ]
    if encoded:
        headers.append((b"content-encoding", b"gzip"))
    return Variant(etag, body, headers, not_modified)


def cached_file(name: str, data: bytes, key: FileKey, *, max_age: int, now: float) -> CachedFile:
    """Everything the responses for one version of a file need, computed once.

    Last-Modified is the document's own date, else the file's mtime, and never later than
    `now` (RFC 9110 §8.8.2.1: an item dated in the future must not make it so)."""
    extension = os.path.splitext(name)[1]
    dated = document_date(extension, data)
    modified = int(min(dated.timestamp() if dated else key[2] / 1e9, now))
    last_modified = formatdate(modified, usegmt=True).encode()
    common: Headers = [
        (b"last-modified", last_modified),
        (b"cache-control", f"public, max-age={max_age}".encode()),
        (b"vary", b"Accept-Encoding"),
        NOSNIFF,
    ]
    digest = hashlib.sha256(data).hexdigest()[:32]
    media_type = MEDIA_TYPES[extension]
    identity = _variant(data, f'"{digest}"'.encode(), common, media_type, encoded=False)
    packed = gzip.compress(data, compresslevel=9, mtime=0)
    zipped = (
        _variant(packed, f'"{digest}-gz"'.encode(), common, media_type, encoded=True)
        if len(packed) < len(data)
        else None
    )
    return CachedFile(key, modified, last_modified, identity, zipped)


def _key(status: os.stat_result) -> FileKey:
    return status.st_dev, status.st_ino, status.st_mtime_ns, status.st_size


# --- the app ------------------------------------------------------------------------------------


class _Loading:
    """A file being read in a thread; requests for the same version wait for it."""

    def __init__(self, key: FileKey) -> None:
        self.key = key
        self.done = anyio.Event()
        self.result: CachedFile | None = None


class FeedServer:
    """The ASGI app serving one feeds folder."""

    def __init__(self, root: Path, *, max_age: int, not_found: bytes) -> None:
        self.root = os.path.abspath(root)
        self.max_age = max_age
        self.not_found = not_found
        self._cache: dict[str, CachedFile] = {}
        self._loading: dict[str, _Loading] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            raise RuntimeError(f"feeds are served over HTTP, not {scope['type']}")
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, [(b"allow", ALLOWED), *_html_headers(NOT_ALLOWED_PAGE)],
                           NOT_ALLOWED_PAGE, method)  # fmt: skip
            return
        root_path: str = scope.get("root_path", "")
        path: str = scope["path"]
        name = file_name(path[len(root_path) :] if root_path and path.startswith(root_path) else path)
        entry = await self._entry(name) if name is not None else None
        if entry is None:
            await _respond(send, 404, _html_headers(self.not_found), self.not_found, method)
            return

        none_match = modified_since = encodings = None
        for header, value in scope["headers"]:
            if header == b"if-none-match":
                none_match = value if none_match is None else none_match + b"," + value
            elif header == b"if-modified-since":
                modified_since = value
            elif header == b"accept-encoding":
                encodings = value if encodings is None else encodings + b"," + value
        variant = entry.identity
        if entry.gzip is not None and encodings is not None and accepts_gzip(encodings):
            variant = entry.gzip
        if none_match is not None:
            fresh = etag_matches(none_match, variant.etag)
        elif modified_since is not None:
            if modified_since == entry.last_modified_header:  # as sent: no need to parse it
                fresh = True
            else:
                since = http_date(modified_since)
                fresh = since is not None and entry.last_modified <= since
        else:
            fresh = False
        if fresh:
            await send({"type": "http.response.start", "status": 304, "headers": variant.not_modified})
            await send({"type": "http.response.body", "body": b""})
            return
        await _respond(send, 200, variant.headers, variant.body, method)

    async def _entry(self, name: str) -> CachedFile | None:
        """The cached version of a file, read again when the file on disk is another one."""
        path = os.path.join(self.root, name)
        try:
            status = os.stat(path)
        except (OSError, ValueError):  # ValueError: a NUL in the name
            self._cache.pop(name, None)  # a feed removed with its term is forgotten too
            return None
        if not stat.S_ISREG(status.st_mode):
            return None
        key = _key(status)
        cached = self._cache.get(name)
        if cached is not None and cached.key == key:
            return cached
        loading = self._loading.get(name)
        if loading is not None and loading.key == key:
            await loading.done.wait()
            return loading.result
        loading = self._loading[name] = _Loading(key)
        try:
            loading.result = await anyio.to_thread.run_sync(self._load, name, path)
        finally:
            loading.done.set()
            if self._loading.get(name) is loading:
                del self._loading[name]
        if loading.result is None:
            self._cache.pop(name, None)
        else:
            self._cache[name] = loading.result
        return loading.result

    def _load(self, name: str, path: str) -> CachedFile | None:
        """Read a file (in a worker thread), unless it resolves outside the folder."""
        # Resolved at each read, not once: the folder may be made, or be a link, after startup.
        root, real = os.path.realpath(self.root), os.path.realpath(path)
        if os.path.commonpath((root, real)) != root:
            return None
        try:
            with open(real, "rb") as handle:
                status = os.fstat(handle.fileno())
                if not stat.S_ISREG(status.st_mode):
                    return None
                data = handle.read()
        except OSError:
            return None
        return cached_file(name, data, _key(status), max_age=self.max_age, now=time.time())


def _html_headers(page: bytes) -> Headers:
    return [(b"content-type", HTML_TYPE), (b"content-length", str(len(page)).encode()), NOSNIFF]


async def _respond(send: Send, status: int, headers: Headers, body: bytes, method: str) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop; answering lets the app run on its own under uvicorn."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def feeds_index_path(config: Config) -> str:
    """The path of the feeds index as the web app publishes it: `web.base_url`'s path + `feeds/`."""
    return urlsplit(config.web.base_url).path.rstrip("/") + "/feeds/"


def not_found_page(config: Config) -> bytes:
    """The 404 page: `web/error.html` (admins' copy first) with a link to the feeds index."""
    title, message = NOT_FOUND
    env = environment(config.templates_path, config.site.zone)
    page = env.get_template("web/error.html").render(
        site=config.site, status=404, title=title, message=message, index=feeds_index_path(config),
        **static_page(config),
    )  # fmt: skip
    return page.encode("utf-8")


def feeds_app(config: Config) -> ASGIApp:
    """The app serving `feeds.output`, to mount at `/feeds`."""
    return FeedServer(config.feeds_path, max_age=config.web.feeds_max_age, not_found=not_found_page(config))

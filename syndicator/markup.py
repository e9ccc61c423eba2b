"""Item bodies: the website's Markdown-ish text turned into sanitised HTML and plain text.

Reference links `[text](#) [N]` point at the numbered `Liens` list; they are resolved to absolute
URLs before Markdown is rendered. Raw HTML in a body is escaped by markdown-it (html off) and the
result is cleaned again by nh3, so no script, handler or `javascript:` URL can reach a feed.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from functools import cache
from urllib.parse import urljoin, urlsplit

import nh3
from markdown_it import MarkdownIt
from markdown_it.token import Token

ALLOWED_TAGS = frozenset(
    {"a", "p", "br", "em", "strong", "ul", "ol", "li", "blockquote", "code", "pre", "h2", "h3",
     "h4", "h5", "h6", "hr"}
)  # fmt: skip
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}, "ol": {"start"}}
URL_SCHEMES = frozenset({"http", "https", "mailto"})

_LINK = re.compile(r"\[(?P<text>[^\[\]\n]*)\]\((?P<target>[^()\s]*)\)(?:[ \t]*\[(?P<ref>\d+)\])?")
# Website chrome that the export keeps as links: bookmarking buttons and the like.
_CRUFT_TEXTS = frozenset({"favoris +", "favoris", "imprimer", "partager"})


@dataclass(frozen=True, slots=True)
class RenderedBody:
    """A body as HTML for readers and as plain-text paragraphs for titles and summaries."""

    html: str
    paragraphs: tuple[str, ...]


def is_script_url(url: str) -> bool:
    """True for `javascript:` URLs, also when the website exported them percent-encoded."""
    lowered = url.strip().lower()
    return lowered.startswith("javascript:") or "javascript%3a" in lowered or "javascript:" in lowered


def absolute(url: str, base: str) -> str:
    """`url` resolved against the item's source URL; unchanged when it already is absolute."""
    url = url.strip()
    if not base or url.startswith(("https://", "http://")):
        return url
    return urljoin(base, url)


def resolve_links(markdown: str, links: dict[int, str], base: str) -> str:
    """Replace reference links by inline links to absolute URLs and drop UI cruft links."""

    def replace(match: re.Match[str]) -> str:
        text, target, ref = match["text"], match["target"], match["ref"]
        url = target if target not in ("", "#") else links.get(int(ref), "") if ref else ""
        if text.strip().lower() in _CRUFT_TEXTS or (url and is_script_url(url)):
            return "" if text.strip().lower() in _CRUFT_TEXTS else text
        if not url:
            return text
        url = absolute(url, base)
        if urlsplit(url).scheme.lower() not in URL_SCHEMES:
            return text
        safe = url.replace("<", "%3C").replace(">", "%3E").replace(" ", "%20")
        return f"[{text}](<{safe}>)"

    return _LINK.sub(replace, markdown)


# The Markdown the website exports: paragraphs, lists, quotes, emphasis, links, headings. Raw HTML
# stays off (escaped as text); indented code, fences and reference definitions are off too, as
# the export never means them and an indented paragraph must stay a paragraph.
_RULES = ["paragraph", "list", "blockquote", "heading", "hr", "emphasis", "link", "autolink",
          "escape", "backticks", "newline", "entity", "text_join"]  # fmt: skip


_URL_SAFE = re.compile(r"[A-Za-z0-9\-._~:/?#@!$&'()*+,;=%]*")


@cache
def _parser() -> MarkdownIt:
    parser = MarkdownIt("zero", {"html": False, "typographer": False}).enable(_RULES)
    encode = parser.normalizeLink

    def normalize_link(url: str) -> str:
        # The links are absolute and already encoded by resolve_links; markdown-it's encoder
        # (punycode, percent-encoding) is only needed for the rare one that is not.
        return url if _URL_SAFE.fullmatch(url) else encode(url)

    parser.normalizeLink = normalize_link  # type: ignore[method-assign]
    return parser


def _plain(inline: Token) -> str:
    parts = []
    for child in inline.children or ():
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return " ".join("".join(parts).split())


def _safe_links(tokens: list[Token], base: str) -> None:
    """Make every link absolute, and unwrap (keep the text of) links to anything but the web."""
    for block in tokens:
        children = block.children or []
        depth_dropped: list[bool] = []
        kept: list[Token] = []
        for child in children:
            if child.type == "link_open":
                href = absolute(str(child.attrGet("href") or ""), base)
                bad = is_script_url(href) or urlsplit(href).scheme.lower() not in URL_SCHEMES
                depth_dropped.append(bad)
                if bad:
                    continue
                child.attrSet("href", href)
            elif child.type == "link_close" and depth_dropped and depth_dropped.pop():
                continue
            kept.append(child)
        if block.children is not None:
            block.children = kept


# A block with none of these characters and no line opening a Markdown block means nothing to
# Markdown: it renders as its escaped text. Most paragraphs of an item are like that, and
# skipping markdown-it for them halves the cost of parsing an item; tests/test_markup.py holds
# both renderings equal.
_INLINE_SYNTAX = re.compile(r"[*_\[\]<>&\\`]|  $|\t", re.MULTILINE)
_BLOCK_OPENER = re.compile(r"^(?:[-+*>#\s]|\d{1,9}[.)]|=+\s*$)", re.MULTILINE)
_BLANK_LINES = re.compile(r"\n(?:[ \t]*\n)+")


def _escape_text(text: str) -> str:
    """Text escaped as nh3 serialises it, so both paths give the same bytes."""
    return html.escape(text, quote=False).replace("\u00a0", "&nbsp;")


def _is_plain(block: str) -> bool:
    return not _INLINE_SYNTAX.search(block) and not _BLOCK_OPENER.search(block)


def _blocks(markdown: str) -> list[tuple[bool, str]]:
    """The body cut at blank lines, plain blocks alone, the others grouped with their neighbours."""
    groups: list[tuple[bool, str]] = []
    for block in _BLANK_LINES.split(markdown.strip("\n")):
        plain = _is_plain(block)
        if not plain and groups and not groups[-1][0]:
            groups[-1] = (False, groups[-1][1] + "\n\n" + block)
        elif block.strip():
            groups.append((plain, block))
    return groups


@cache
def _cleaner() -> nh3.Cleaner:
    # Built once: nh3.clean() would rebuild the same allow-lists on every call.
    return nh3.Cleaner(
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel=None,
    )


def _clean(fragment: str) -> str:
    return str(_cleaner().clean(fragment))


def _render_html(markdown: str, base: str) -> tuple[str, tuple[str, ...]]:
    """Markdown to (HTML, paragraphs as plain text). What markdown-it renders goes through nh3;
    plain blocks are escaped text already and skip it."""
    parser = _parser()
    parts: list[str] = []
    paragraphs: list[str] = []
    for plain, block in _blocks(markdown):
        if plain:
            lines = [line.rstrip(" ") for line in block.split("\n")]
            parts.append("<p>" + "\n".join(map(_escape_text, lines)) + "</p>\n")
            paragraphs.append(" ".join(" ".join(lines).split()))
            continue
        tokens = parser.parse(block)
        _safe_links(tokens, base)
        parts.append(_clean(parser.renderer.render(tokens, parser.options, {})))
        paragraphs += [text for token in tokens if token.type == "inline" and (text := _plain(token))]
    return "".join(parts), tuple(paragraphs)


def render(markdown: str, base: str = "") -> RenderedBody:
    """Render resolved Markdown to sanitised HTML and its paragraphs as plain text."""
    body, paragraphs = _render_html(markdown, base)
    return RenderedBody(html=body.strip(), paragraphs=paragraphs)


def summarize(paragraph: str, limit: int = 300) -> str:
    """`paragraph` cut at a word boundary near `limit` characters, with an ellipsis if cut."""
    if len(paragraph) <= limit:
        return paragraph
    cut = paragraph[: limit + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space >= limit * 2 // 3 else cut[:limit]
    return cut.rstrip(" ,;:.-–(«\"'") + "…"

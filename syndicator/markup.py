"""Item bodies: the website's Markdown-ish text turned into sanitised HTML and plain text.

Reference links `[text](#) [N]` point at the numbered `Liens` list; they are resolved to absolute
URLs before Markdown is rendered. Raw HTML in a body is escaped by markdown-it (html off) and the
result is cleaned again by nh3, so no script, handler or `javascript:` URL can reach a feed.
"""

from __future__ import annotations

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
    return urljoin(base, url.strip()) if base else url.strip()


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


@cache
def _parser() -> MarkdownIt:
    return MarkdownIt("commonmark", {"html": False, "typographer": False})


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


def render(markdown: str, base: str = "") -> RenderedBody:
    """Render resolved Markdown to sanitised HTML and its paragraphs as plain text."""
    parser = _parser()
    tokens = parser.parse(markdown)
    _safe_links(tokens, base)
    html = parser.renderer.render(tokens, parser.options, {})
    clean = nh3.clean(
        html,
        tags=set(ALLOWED_TAGS),
        attributes={tag: set(attrs) for tag, attrs in ALLOWED_ATTRIBUTES.items()},
        url_schemes=set(URL_SCHEMES),
        link_rel=None,
    )
    paragraphs = tuple(text for token in tokens if token.type == "inline" and (text := _plain(token)))
    return RenderedBody(html=clean.strip(), paragraphs=paragraphs)


def summarize(paragraph: str, limit: int = 300) -> str:
    """`paragraph` cut at a word boundary near `limit` characters, with an ellipsis if cut."""
    if len(paragraph) <= limit:
        return paragraph
    cut = paragraph[: limit + 1]
    space = cut.rfind(" ")
    cut = cut[:space] if space >= limit * 2 // 3 else cut[:limit]
    return cut.rstrip(" ,;:.-–(«\"'") + "…"

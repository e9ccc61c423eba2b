"""Item bodies: the website's Markdown-ish text turned into sanitised HTML and plain text.

Reference links `[text](#) [N]` point at the numbered `Liens` list; they are resolved to absolute
URLs before Markdown is rendered. Raw HTML in a body is escaped by markdown-it (html off) and the
result is cleaned again by nh3, so no script, handler or `javascript:` URL can reach a feed.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING
from urllib.parse import urljoin, urlsplit

import nh3

if TYPE_CHECKING:
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


def is_web_url(url: str) -> bool:
    """True for an absolute http(s) URL with a host: the only links feeds and emails carry
    outside a body (attachments, term pages)."""
    parts = urlsplit(url)
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc) and not is_script_url(url)


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
    # Imported here: markdown-it costs 16 ms that a command reading no item file (`digest
    # send`: bench/rss2email.py, at 0 ms) need not pay.
    from markdown_it import MarkdownIt  # noqa: PLC0415

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


# Most blocks of an item are paragraphs of text with at most `*`/`**` emphasis and the links
# resolve_links writes, or lists of one-line `- ` items made of the same. They are rendered here
# rather than through markdown-it for bench/ingest.py's target (a first ingest of 10,000 files at
# ≥ 1,000 items/s, parsed in one process): six runs each on the shared 2-core machine, median
# 866 items/s with these fast paths and 487 without (1,400 against 998 in the quietest pair), and
# 0.71–0.86 ms of CPU an item against 0.99–1.37. tests/test_markup.py holds both renderings
# equal, HTML and plain text, over generated bodies. Anything else goes to markdown-it, a group
# of blocks at a time.

# The start of a line that may open a Markdown block (a list item, a rule, a quote, a heading),
# or continue one across a blank line when indented.
_RULE = r"([-*_])[ \t]*\1[ \t]*\1"
_OPENER = "|".join(
    [r"[-+*](?=[ \t]|$)", _RULE, r"#{1,6}(?=[ \t]|$)", r"[>\s]", r"\d{1,9}[.)](?=[ \t]|$)", r"=+\s*$"]
)
_LINE_OPENER = re.compile(f"(?:{_OPENER})")  # matched at each line's start: faster than ^ and M
_LINE_RULE = re.compile(_RULE)
_HEADING = re.compile(r"(#{1,6}) ([^#\n]*)")  # without closing `#`s, whose rules are subtle
_BLANK_LINES = re.compile(r"\n(?:[ \t]*\n)+")
# Control characters, which Markdown or HTML parsing may change (U+0000 becomes U+FFFD, CR ends a
# line, ...): a body holding any goes to markdown-it whole. Tabs are looked for block by block.
_CONTROLS = bytes([*range(0x09), *range(0x0B, 0x20)])
# A link as resolve_links writes it, or a run of `*`. Both start with the character class, which
# lets the regex engine skip ahead to the next `[` or `*` (an alternation would not).
_INLINE_TOKEN = re.compile(
    r"[\[*](?:(?<=\[)(?P<label>[^\[\]<>&\\`*_\x00-\x1f\x7f-\x9f]+)\]"
    r"\(<(?P<url>https?://[A-Za-z0-9\-._~:/?#@!$'()*+,;=%]*)>\)|(?<=\*)\**)"
)
# What markdown-it strips around a paragraph: JavaScript's trim() set, not str.strip()'s.
_MD_TRIM = "\t\n\v\f\r \u00a0\u1680\u202f\u205f\u3000\u2028\u2029" + "".join(map(chr, range(0x2000, 0x200B)))


def _has_controls(text: str) -> bool:
    """Whether text holds a control character other than tab and line feed (or a lone
    surrogate). bytes.translate tells in a few instructions a byte; a regex takes fifty."""
    try:
        data = text.encode()
    except UnicodeEncodeError:
        return True
    return len(data.translate(None, _CONTROLS)) != len(data)


def _is_slow(text: str) -> bool:
    """Whether text holds what the fast path leaves to markdown-it: inline syntax other than `*`
    (entities, escapes, code, `_` emphasis, autolinks, brackets outside a link), tabs, hard
    breaks. One `in` a character: each is a C search, many times faster than a regex class."""
    return (
        "_" in text or "[" in text or "]" in text or "<" in text or ">" in text or "&" in text
        or "\\" in text or "`" in text or "\t" in text or "  \n" in text or text.endswith("  ")
    )  # fmt: skip


def _text_html(text: str) -> str:
    """Text without `&`, `<`, `>` as markdown-it then nh3 serialise it; a space ending a line
    goes, as markdown-it drops it."""
    return text.replace(" \n", "\n").replace("\u00a0", "&nbsp;")


def _is_space(char: str) -> bool:
    """CommonMark's Unicode whitespace, which the ends of a paragraph count as."""
    return char in "\t\n\v\f\r" or unicodedata.category(char) == "Zs"


def _is_punctuation(char: str) -> bool:
    """CommonMark's Unicode punctuation: the P and S categories."""
    return unicodedata.category(char)[0] in "PS"


def _flanking(src: str, start: int, end: int) -> tuple[bool, bool]:
    """Whether the run of `*` at src[start:end] can open and can close emphasis (CommonMark's
    left- and right-flanking delimiter runs; `*` may split words)."""
    before = src[start - 1] if start > 0 else " "
    after = src[end] if end < len(src) else " "
    space_before, space_after = _is_space(before), _is_space(after)
    punct_before, punct_after = _is_punctuation(before), _is_punctuation(after)
    left = not space_after and not (punct_after and not (space_before or punct_before))
    right = not space_before and not (punct_before and not (space_after or punct_after))
    return left, right


def _inline(src: str) -> tuple[str, str, bool] | None:
    """Inline Markdown made of text, `*`/`**` emphasis and absolute links, as markdown-it and
    nh3 render it: (HTML, plain text, whether it has a link). None for anything else, which
    markdown-it is left to render."""
    if "*" not in src and "[" not in src:  # most paragraphs: text alone
        return None if _is_slow(src) else (_text_html(src), " ".join(src.split()), False)
    html_parts: list[str] = []
    text_parts: list[str] = []
    runs: list[tuple[int, int, bool, bool]] = []  # part index, length, can open, can close
    has_link = False
    position = 0
    for match in _INLINE_TOKEN.finditer(src):
        start = match.start()
        if start > position:
            text = src[position:start]
            if _is_slow(text):
                return None
            html_parts.append(_text_html(text))
            text_parts.append(text)
        position = match.end()
        url = match["url"]
        if url is None:
            stars = match.group()
            runs.append((len(html_parts), len(stars), *_flanking(src, start, position)))
            html_parts.append(stars)
            text_parts.append(stars)
            continue
        if "javascript" in url.lower():
            return None
        label = match["label"]
        html_parts.append(f'<a href="{url}">{_text_html(label)}</a>')
        text_parts.append(label)
        has_link = True
    if position < len(src):
        text = src[position:]
        if _is_slow(text):
            return None
        html_parts.append(_text_html(text))
        text_parts.append(text)
    openers: list[tuple[int, int]] = []  # part index and length of the runs still open
    for index, length, can_open, can_close in runs:
        if not (can_open or can_close):
            continue  # literal text
        if length > 2:
            return None
        if can_close and openers:
            # markdown-it would look further back when the nearest opener does not fit.
            if openers[-1][1] != length:
                return None
            start = openers.pop()[0]
            tag = "em" if length == 1 else "strong"
            html_parts[start], html_parts[index] = f"<{tag}>", f"</{tag}>"
            text_parts[start] = text_parts[index] = ""
        elif can_open:
            openers.append((index, length))
        # a closer with nothing to close, or an opener never closed, stays literal text
    return "".join(html_parts), " ".join("".join(text_parts).split()), has_link


def _fast_paragraph(block: str) -> tuple[str, list[str], bool] | None:
    """A block without block syntax: one paragraph. Its first character is not a space."""
    rendered = _inline(block.rstrip(_MD_TRIM))
    if rendered is None:
        return None
    body, text, has_link = rendered
    return f"<p>{body}</p>\n", [text] if text else [], has_link


def _fast_list(blocks: list[str]) -> tuple[str, list[str], bool] | None:
    """Blocks of one-line `- ` items: one list, loose when blank lines part its blocks."""
    loose = len(blocks) > 1
    parts, texts, links = ["<ul>\n"], [], False
    for block in blocks:
        for line in block.split("\n"):
            content = line[2:].rstrip(_MD_TRIM)
            if not (line.startswith("- ") and content) or _LINE_RULE.match(line):
                return None
            if _LINE_OPENER.match(content):  # a nested block
                return None
            rendered = _inline(content)
            if rendered is None:
                return None
            body, text, has_link = rendered
            parts.append(f"<li>\n<p>{body}</p>\n</li>\n" if loose else f"<li>{body}</li>\n")
            if text:
                texts.append(text)
            links = links or has_link
    parts.append("</ul>\n")
    return "".join(parts), texts, links


def _fast_heading(line: str) -> tuple[str, list[str], bool] | None:
    """A one-line `#` heading without closing `#`s."""
    match = _HEADING.fullmatch(line)
    rendered = _inline(match[2].strip(_MD_TRIM)) if match else None
    if match is None or rendered is None or not rendered[0]:
        return None
    body, text, has_link = rendered
    tag = f"h{len(match[1])}"
    html_ = f"<{tag}>{body}</{tag}>\n" if tag in ALLOWED_TAGS else f"{body}\n"  # nh3 unwraps h1
    return html_, [text] if text else [], has_link


Section = tuple[str, str, list[str]]  # kind, text, the blocks it is made of


def _sections(markdown: str) -> list[Section]:
    """The body cut at blank lines into sections Markdown renders on their own: a block without
    block syntax ("paragraph": one paragraph whatever surrounds it), a one-line heading
    ("heading"), or consecutive blocks with other syntax ("other", as they may belong together:
    a list parted by blank lines), with the blank lines between them as they are."""
    text = markdown.strip("\n")
    spans: list[tuple[str, int, int, list[str]]] = []
    start = 0
    for blank in [*_BLANK_LINES.finditer(text), None]:
        end = blank.start() if blank else len(text)
        block = text[start:end]
        if block.strip(" \t\n"):
            lines = block.split("\n")
            if not any(map(_LINE_OPENER.match, lines)):
                spans.append(("paragraph", start, end, [block]))
            elif len(lines) == 1 and _HEADING.fullmatch(block):
                spans.append(("heading", start, end, [block]))
            elif spans and spans[-1][0] == "other":
                spans[-1][3].append(block)  # in place: a copy each time would be quadratic
                spans[-1] = ("other", spans[-1][1], end, spans[-1][3])
            else:
                spans.append(("other", start, end, [block]))
        start = blank.end() if blank else end
    return [(kind, text[begin:end], blocks) for kind, begin, end, blocks in spans]


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


def _render_markdown_it(markdown: str, base: str) -> tuple[str, list[str]]:
    """Markdown to (HTML, paragraphs as plain text) through markdown-it and nh3: the reference."""
    parser = _parser()
    tokens = parser.parse(markdown)
    _safe_links(tokens, base)
    html_ = _clean(parser.renderer.render(tokens, parser.options, {}))
    return html_, [text for token in tokens if token.type == "inline" and (text := _plain(token))]


# markdown-it takes time that grows faster than the text on some inputs (2 MiB of `![a` in one
# paragraph: 86 s), up to 25 µs for each character that may open inline syntax, and about 2 ms
# a call. A section longer than MAX_MARKDOWN_SECTION, or whose syntax characters (and call)
# would take an item past MAX_MARKDOWN_SYNTAX in all, is rendered a block at a time, and a
# block still beyond them as plain text: no real item comes near, and rendering stays linear in
# the body's size (a few seconds for the worst 2 MiB) whatever it holds.
MAX_MARKDOWN_SECTION = 20_000  # characters
MAX_MARKDOWN_SYNTAX = 20_000  # characters among _SYNTAX, for the whole item
_SYNTAX = re.compile(r"[\[\]*_`<>&\\]")
_CALL_COST = 100  # a call to markdown-it costs about what 100 syntax characters do (2 ms)


class _Budget:
    """What is left of MAX_MARKDOWN_SYNTAX for an item's sections that markdown-it renders."""

    def __init__(self) -> None:
        self.left = MAX_MARKDOWN_SYNTAX

    def take(self, section: str) -> bool:
        if len(section) > MAX_MARKDOWN_SECTION:
            return False
        cost = _CALL_COST + len(_SYNTAX.findall(section))
        if cost > self.left:
            return False
        self.left -= cost
        return True


def _render_plain(section: str) -> tuple[str, list[str]]:
    """A section as escaped paragraphs of text, its Markdown not interpreted."""
    texts = [text for block in _BLANK_LINES.split(section) if (text := " ".join(block.split()))]
    return "".join(f"<p>{html.escape(text, quote=False)}</p>\n" for text in texts), texts


def _render_section(section: str, blocks: list[str], base: str, budget: _Budget) -> tuple[str, list[str]]:
    """A section through markdown-it; beyond the bounds, a block at a time (a long list then
    loses only its looseness), and a block still beyond them as plain text."""
    if budget.take(section):
        return _render_markdown_it(section, base)
    if len(blocks) < 2:
        return _render_plain(section)
    parts: list[str] = []
    texts: list[str] = []
    for block in blocks:
        body, block_texts = _render_section(block, [block], base, budget)
        parts.append(body)
        texts += block_texts
    return "".join(parts), texts


def _render_html(markdown: str, base: str) -> tuple[str, tuple[str, ...]]:
    """Markdown to (HTML, paragraphs as plain text), as `_render_markdown_it` renders it."""
    if _has_controls(markdown):
        html_, texts = _render_section(markdown, [markdown], base, _Budget())
        return html_, tuple(texts)
    parts: list[str] = []
    paragraphs: list[str] = []
    budget = _Budget()
    for kind, section, blocks in _sections(markdown):
        if kind == "paragraph":
            fast = _fast_paragraph(section)
        elif kind == "heading":
            fast = _fast_heading(section)
        else:
            fast = _fast_list(blocks)
        if fast is None:
            body, texts = _render_section(section, blocks, base, budget)
        else:
            body, texts, has_link = fast
            if has_link:
                body = _clean(body)  # nh3 is the judge of URLs; it keeps the rest as it is
        parts.append(body)
        paragraphs += texts
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

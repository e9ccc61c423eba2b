"""French typography, in one place: the spaces around punctuation, apostrophes, days, times, articles.

`french_text` gives plain text its no-break spaces: a narrow one (U+202F) before `;` `?` `!`, a
no-break one (U+00A0) before `:` and inside « ». It only turns a space already written into the
right one (inside « » it also adds a missing one): text where the punctuation touches the word
before it (`09:30`, `https://x.org/?a=1`, `a;b`, `Yahoo!`, an address) is left alone, so URLs,
addresses, times and code are never changed. `french_markup` does the same to the text of an
HTML document only: tags, attributes, comments and the content of `<style>`, `<script>`, `<pre>`,
`<code>` and `<textarea>` are copied as they are. `typo`, the Jinja filter every shipped template
wraps its output in, picks one or the other by whether its value is markup.

Typographic apostrophes are for the text syndicator writes: the templates' own text gets them
when compiled (`Apostrophes`, a Jinja extension), the Python code writes them itself. Text that
comes from the website (titles, summaries, terms) keeps the apostrophes its editors typed.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from datetime import date, time

from babel.dates import format_date
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.lexer import Token, TokenStream
from markupsafe import Markup

LOCALE = "fr_FR"
NBSP = "\u00a0"  # before `:`, inside « », in `9 h 30`
NNBSP = "\u202f"  # narrow: before `;` `?` `!`

_SPACES = "[ \t\u00a0\u202f]"
# A run of spaces before the punctuation; the punctuation is captured to pick the space. Starting
# with a plain character class, the pattern is searched for fast (a lookbehind first is ten times
# slower on a digest); a run at the start of a line is told apart when one is found.
_BEFORE = re.compile(rf"{_SPACES}+(?=([;?!:]))")
_GUILLEMETS = re.compile(rf"«{_SPACES}*|{_SPACES}*»")
# An HTML document cut into what is copied as it is (group 1) and text (between matches).
_VERBATIM = re.compile(
    r"(<!--.*?-->|<(style|script|pre|code|textarea)\b[^>]*>.*?</\2\s*>|<[^>]*>)",
    re.DOTALL | re.IGNORECASE,
)
_APOSTROPHE = re.compile(r"(?<=\w)'(?=\w)")
_MARKS = re.compile("[;?!:«»]")


def french_text(text: str) -> str:
    """`text` with French no-break spaces before `; ? ! :` and inside « » (see the module doc)."""
    if _MARKS.search(text) is None:
        return text
    text = _BEFORE.sub(_space, text)
    if "«" in text or "»" in text:
        text = _GUILLEMETS.sub(_guillemet, text)
    return text


def _space(match: re.Match[str]) -> str:
    start = match.start()
    if start and match.string[start - 1] in "\n\r\f\v":  # indentation, not a space after a word
        return match.group()
    return NBSP if match.group(1) == ":" else NNBSP


def _guillemet(match: re.Match[str]) -> str:
    return "«" + NBSP if match.group().startswith("«") else NBSP + "»"


def french_markup(html: str) -> str:
    """`french_text` applied to the text of an HTML document only; markup copied as it is."""
    if _MARKS.search(html) is None:
        return html
    pieces = _VERBATIM.split(html)
    # split() gives text, verbatim, the verbatim element's name (or None), text, ...
    search = _MARKS.search
    pieces[0::3] = [french_text(text) if search(text) else text for text in pieces[0::3]]
    del pieces[2::3]
    return "".join(pieces)


def typo(value: object) -> str:
    """The Jinja filter: markup (an autoescaped block, an HTML value) keeps its tags untouched and
    stays markup; anything else is plain text, escaped afterwards as usual."""
    if isinstance(value, Markup):
        return Markup(french_markup(str(value)))
    return french_text(str(value))


def apostrophes(text: str) -> str:
    """`l'adresse` → `l’adresse`: a straight apostrophe between two letters becomes typographic."""
    return _APOSTROPHE.sub("’", text) if "'" in text else text


class Apostrophes(Extension):
    """Typographic apostrophes in the templates' own text, made once when a template compiles:
    only the text written in the template, never a variable's value nor a tag's content
    (`{{ … }}`, `{% … %}`); a quote that is not between two letters (an attribute's) stays."""

    def filter_stream(self, stream: TokenStream) -> Iterator[Token]:
        for token in stream:
            if token.type == "data":
                yield Token(token.lineno, "data", apostrophes(token.value))
            else:
                yield token

    def parse(self, parser: object) -> nodes.Node:  # pragma: no cover - no tags of its own
        raise NotImplementedError


def french_day(day: date, style: str = "long") -> str:
    """`1er mars 2022`, `30 novembre 2021` (long); `mardi 1er mars 2022` (full)."""
    pattern = "d MMMM y" if style == "long" else "EEEE d MMMM y"
    text = format_date(day, pattern, locale=LOCALE)
    if day.day != 1:
        return text
    return re.sub(r"(?<!\d)1(?= )", "1er", text, count=1)


def french_time(clock: time) -> str:
    """`9 h 30`, `14 h`, `0 h 15`: the hour without a leading zero, no-break spaces around `h`."""
    if clock.minute == 0:
        return f"{clock.hour}{NBSP}h"
    return f"{clock.hour}{NBSP}h{NBSP}{clock.minute:02d}"


def _starts_with_vowel_sound(word: str) -> bool:
    first = unicodedata.normalize("NFD", word[:1]).lower()[:1]
    return bool(first) and first in "aeiouy"  # not h: it may be aspirated (les Hauts-de-France)


def with_article(title: str) -> str:
    """The site's name as a sentence needs it, by default: `l’IREV` for a name that starts with a
    vowel, else the name alone (`Lille`); `site.title_with_article` says it otherwise."""
    return f"l’{title}" if title and _starts_with_vowel_sound(title) else title


def de(noun: str) -> str:
    """`de` before a noun with its article: `de l’IREV`, `de la CNIL`, `du Cerema` (le), `des
    Hauts-de-France` (les), `d’Amiens`, `de Lille`."""
    return _contract(noun, "de", "du", "des", "d’")


def a(noun: str) -> str:
    """`à` before a noun with its article: `à la lettre d’information`, `à l’IREV`, `au Cerema`,
    `aux communes`."""
    return _contract(noun, "à", "au", "aux", None)


def capfirst(text: str) -> str:
    """`la lettre` → `La lettre`: the first letter up, the rest as written (not `capitalize`)."""
    return text[:1].upper() + text[1:]


def _contract(noun: str, plain: str, masculine: str, plural: str, elided: str | None) -> str:
    head, _, rest = noun.partition(" ")
    if head.lower() == "le" and rest:
        return f"{masculine} {rest}"
    if head.lower() == "les" and rest:
        return f"{plural} {rest}"
    if elided and noun[:2].lower() not in ("l’", "l'") and _starts_with_vowel_sound(noun):
        return f"{elided}{noun}"
    return f"{plain} {noun}"

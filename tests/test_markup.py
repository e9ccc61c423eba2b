"""Body rendering: the shortcut for plain paragraphs gives exactly what markdown-it gives."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from syndicator.markup import _clean, _parser, _render_html

LINES = [
    "Un paragraphe ordinaire, avec des accents : été, à, œuvre.",
    "Espaces\u00a0insécables\u00a0: oui\u202fnon.",
    "Les « guillemets » et l'apostrophe ' et \"doubles\".",
    "- un élément de liste",
    "  suite indentée",
    "* autre puce",
    "1. premier",
    "2) second",
    "> une citation",
    "## Un intertitre",
    "---",
    "***",
    "===",
    "Texte *important* et **gras**.",
    "Un lien [ici](https://www.irev.fr/a) et <https://irev.fr>.",
    "A & B < C > D",
    "fin avec deux espaces  ",
    "fin avec une espace ",
    "    code indenté",
    "\ttabulation",
    "2022. Une année",
    "#hashtag",
    "_souligné_",
    "`code`",
    "",
    "",
]


@settings(max_examples=500)
@given(st.lists(st.sampled_from(LINES), max_size=14))
def test_shortcut_renders_like_markdown_it(lines: list[str]) -> None:
    """Any mix of plain and Markdown blocks renders as markdown-it renders the whole text."""
    text = "\n".join(lines)
    html, _ = _render_html(text, "")
    assert html == _clean(_parser().render(text))


def test_plain_paragraphs_keep_their_text() -> None:
    """A plain paragraph is escaped and gives its text, lines joined by spaces."""
    html, paragraphs = _render_html("Ligne un\nligne deux & trois\n\n- liste", "")
    assert html == "<p>Ligne un\nligne deux &amp; trois</p>\n<ul>\n<li>liste</li>\n</ul>\n"
    assert paragraphs == ("Ligne un ligne deux & trois", "liste")

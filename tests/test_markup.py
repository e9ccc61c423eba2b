"""Body rendering: the fast paths for paragraphs and lists give exactly what markdown-it gives."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from syndicator.parsing.markup import _clean, _parser, _render_html, _render_markdown_it

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


# Pieces of body text, many of them next to the edges of what the fast paths take on: emphasis
# next to punctuation, spaces of every kind and links, links of every shape, and what markdown-it
# alone may render (other inline syntax, hard breaks, block openers at the start of a line).
WORDS = ["mot", "Été", "l'œuvre", "d’actions", "2022", "GIP", "à", "x"]
PUNCTUATION = ['"', "«", "»", ":", ";", ",", ".", "!", "?", "(", ")", "'", "’", "-", "€", "…", "/"]
SPACES = [" ", " ", " ", "\u00a0", "\u202f", "\u2009", "\u3000", "\u2028", "\u1680"]
STARS = ["*", "*", "**", "***", "****"]
EMPHASIS = ["*mot*", "**deux mots**", '*"cité"*', "*l'œuvre*", "**Attention :**", "*x", "y**", "*(a)*"]
LINKS = [
    "[ici](<https://www.irev.fr/a>)",
    "[le guide « évaluation »](<https://www.irev.fr/ressources/guide-evaluation?x=1#p>)",
    "[ (entre) ](<http://a.fr/b*c(d)'e>)",
    "[vide](<https://>)",
    "[hôte](<https://exa mple.fr/>)",
    "[script](<https://javascript.fr/a>)",
    "[courriel](<mailto:contact@irev.fr>)",
    "[nu](https://www.irev.fr/a)",
    "[relatif](<a/b>)",
    "[esperluette](<https://a.fr/?a=1&b=2>)",
    "[](<https://a.fr/>)",
]
OTHER_INLINE = ["_", "&", "&amp;", "<", ">", "\\", "`", "[", "]", "\t", "  ", "<b>", "\x85", "\x80", "\x7f"]
LINE_STARTS = [
    "", "", "", "", "- ", "- ", "* ", "*", "-", "+ ", "# ", "###### ", "#", "> ", "    ", "  ", "\u00a0",
    "2022. ", "3.5 ", "1) ", "***", "* * *", "___", "---", "- - -", "- *", "- # ", "- 1. ", "-  ",
]  # fmt: skip
SEPARATORS = ["\n", "\n\n", "\n\n", "\n \n\t\n", "\n\n\n"]


def _body(pieces: st.SearchStrategy[str], starts: list[str]) -> st.SearchStrategy[str]:
    line = st.builds(
        lambda start, parts, end: start + "".join(parts) + end,
        st.sampled_from(starts),
        st.lists(pieces, max_size=12),
        st.sampled_from(["", "", "", " ", "  ", "\u00a0", " \u00a0"]),
    )
    return st.lists(st.tuples(line, st.sampled_from(SEPARATORS)), max_size=8).map(
        lambda lines: "".join(text + separator for text, separator in lines)
    )


# Bodies the fast paths mostly take on (words, emphasis, links, `- ` lists), and bodies full of
# what they leave to markdown-it.
FAST_PIECES = st.sampled_from(WORDS * 2 + PUNCTUATION + SPACES * 3 + STARS + EMPHASIS * 2 + LINKS[:3])
ANY_PIECES = st.one_of(
    *(st.sampled_from(p) for p in (WORDS, PUNCTUATION, SPACES, STARS, EMPHASIS, LINKS, OTHER_INLINE))
)
BODIES = st.one_of(_body(FAST_PIECES, ["", "", "- ", "- ", "# ", "## "]), _body(ANY_PIECES, LINE_STARTS))


@settings(max_examples=400, deadline=None)
@given(BODIES, st.sampled_from(["", "https://www.irev.fr/actualites-0/a-b"]))
def test_fast_paths_render_like_markdown_it(text: str, base: str) -> None:
    """Paragraphs and lists rendered without markdown-it give the same HTML and the same plain
    text (for titles and summaries) as markdown-it and nh3 give for the whole body."""
    html, paragraphs = _render_html(text, base)
    expected_html, expected_paragraphs = _render_markdown_it(text, base)
    assert html == expected_html
    assert paragraphs == tuple(expected_paragraphs)


@pytest.mark.parametrize("control", ["\x00", "\x0c", "\r", "\x1f"])
def test_bodies_with_control_characters_render_like_markdown_it(control: str) -> None:
    """A control character sends the body to markdown-it whole."""
    text = f"Un *mot*{control} et [un lien](<https://www.irev.fr/a>).\n\n- un point"
    html, paragraphs = _render_markdown_it(text, "")
    assert _render_html(text, "") == (html, tuple(paragraphs))


def test_emphasis_links_and_lists_render_without_surprise() -> None:
    """Emphasis next to quotes, a link, a list: the HTML a reader gets, and the plain text."""
    text = (
        'Il dit *"bonjour"*, puis **au revoir** sur [le site](<https://www.irev.fr/a>).\n\n'
        "- un *premier* point ;\n- un second."
    )
    html, paragraphs = _render_html(text, "")
    assert html == (
        '<p>Il dit <em>"bonjour"</em>, puis <strong>au revoir</strong> sur '
        '<a href="https://www.irev.fr/a">le site</a>.</p>\n'
        "<ul>\n<li>un <em>premier</em> point ;</li>\n<li>un second.</li>\n</ul>\n"
    )
    assert paragraphs == ('Il dit "bonjour", puis au revoir sur le site.', "un premier point ;", "un second.")


def test_plain_paragraphs_keep_their_text() -> None:
    """A plain paragraph is escaped and gives its text, lines joined by spaces."""
    html, paragraphs = _render_html("Ligne un\nligne deux & trois\n\n- liste", "")
    assert html == "<p>Ligne un\nligne deux &amp; trois</p>\n<ul>\n<li>liste</li>\n</ul>\n"
    assert paragraphs == ("Ligne un ligne deux & trois", "liste")

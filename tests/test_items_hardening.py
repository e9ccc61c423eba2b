"""Hostile or odd item files: only web links leave the parser, parsing stays linear, titles
find the words French elides."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import feedparser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syndicator.parsing.items import parse_text

from .conftest import Run

TRAPPED = """Un appel à projets pour les quartiers de Roubaix.

Poids : 1.8 Mo

[Téléchargement](#) [1]

Poids : 2 Mo

[Téléchargement](#) [2]

Poids : 3 Ko

[Téléchargement](#) [5]

Thématiques: [Liens piégés](#) [3], [Emploi](#) [6]

Territoires : [Roubaix](#) [4]

Publié le 30 novembre 2021

URL de la source (modifié le 30/11/2021 - 11:29): <https://www.irev.fr/actualites-0/des-liens-pieges>

Liens

[1] javascript:alert(1)//x.pdf

[2] data:application/pdf;base64,JVBERi0xLjQ=

[3] vbscript:msgbox(1)

[4] <https://www.irev.fr/roubaix>

[5] <https://www.irev.fr/sites/default/files/bon.pdf>

[6] <https:///sans-hote>
"""


def test_attachments_and_term_pages_that_are_not_web_links_are_dropped_with_a_located_warning() -> None:
    """A `javascript:` or `data:` download and a `vbscript:` term page are dropped, each with a
    warning naming its line; the web attachment and the terms themselves are kept."""
    parsed = parse_text(TRAPPED, "piege.txt")
    item = parsed.item
    assert [a.url for a in item.attachments] == ["https://www.irev.fr/sites/default/files/bon.pdf"]
    assert item.attachments[0].size_bytes == 3 * 1024
    assert [(t.name, t.url) for t in item.thematiques] == [("Liens piégés", None), ("Emploi", None)]
    assert [(t.name, t.url) for t in item.territoires] == [("Roubaix", "https://www.irev.fr/roubaix")]
    shown = [str(w) for w in parsed.warnings]
    assert shown == [
        "piege.txt:15: warning: the page of 'Liens piégés' is not a web link ('vbscript:msgbox(1)'); "
        "term kept without it",
        "piege.txt:15: warning: the page of 'Emploi' is not a web link ('https:///sans-hote'); "
        "term kept without it",
        "piege.txt:5: warning: download link 'javascript:alert(1)//x.pdf' is not a web link "
        "(http or https); attachment ignored",
        "piege.txt:9: warning: download link 'data:application/pdf;base64,JVBERi0xLjQ=' is not a web "
        "link (http or https); attachment ignored",
    ]


def test_links_that_are_not_web_links_reach_neither_feeds_nor_opml_nor_digests(
    run: Run, project: Path
) -> None:
    """Through the real commands: no enclosure, channel link, OPML `htmlUrl` or digest link
    carries a `javascript:`, `data:` or `vbscript:` URL; `ingest` shows the located warnings."""
    (project / "items" / "zz-piege.txt").write_text(TRAPPED, encoding="utf-8")
    ingested = run("ingest")
    assert ingested.code == 0, ingested.err
    assert "items/zz-piege.txt:5: warning: download link 'javascript:alert(1)//x.pdf'" in ingested.err
    assert run("feeds").code == 0
    feeds = project / "feeds"
    produced = b"".join(p.read_bytes() for p in feeds.rglob("*") if p.is_file())
    for scheme in (b"javascript:", b"data:application", b"vbscript:"):
        assert scheme not in produced.lower()
    rss = feedparser.parse((feeds / "thematiques" / "liens-pieges.rss").read_bytes())
    assert rss.bozo == 0 and rss.feed.link == "https://www.irev.fr"
    [entry] = rss.entries
    assert [e.href for e in entry.enclosures] == ["https://www.irev.fr/sites/default/files/bon.pdf"]
    atom = feedparser.parse((feeds / "thematiques" / "liens-pieges.atom").read_bytes())
    [entry] = atom.entries
    assert [link.href for link in entry.links if link.rel == "enclosure"] == [
        "https://www.irev.fr/sites/default/files/bon.pdf"
    ]
    opml = (feeds / "index.opml").read_text(encoding="utf-8")
    assert 'text="Liens piégés"' in opml and 'htmlUrl="https://www.irev.fr"' in opml
    preview = run("digest", "preview", "centre.social@example.org", "--out", "preview")
    assert preview.code == 0, preview.err
    for path in (project / "preview").iterdir():
        text = path.read_text(encoding="utf-8").lower()
        assert "bon.pdf" in text, path.name
        assert "javascript:" not in text and "data:application" not in text and "vbscript:" not in text


SOURCE = "\n\nURL de la source: <https://www.irev.fr/actualites-0/{slug}>\n"
BUDGET = timedelta(seconds=3)  # per example; the inputs below took 10 to 20 s before


@settings(max_examples=6, deadline=BUDGET, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(10_000, 40_000))
def test_a_heading_full_of_spaces_parses_in_linear_time(spaces: int) -> None:
    """`# a` + thousands of spaces + `b` (quadratic for the title regex) parses at once."""
    text = "# a" + " " * spaces + "b" + SOURCE.format(slug="x")
    assert parse_text(text, "h.txt").item.title == "a b"


@settings(max_examples=6, deadline=BUDGET, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(50, 300), st.integers(4_000, 12_000), st.sampled_from(["a", "l'a", "a-a"]))
def test_a_slug_repeating_one_word_of_a_body_repeating_it_parses_in_linear_time(
    slug_words: int, body_words: int, word: str
) -> None:
    """A slug of a hundred `a` over a body of thousands of `a` (cubic before) takes well under
    the budget, whatever elisions or hyphens join them."""
    text = " ".join([word] * body_words) + SOURCE.format(slug="-".join(["a"] * slug_words))
    title = parse_text(text, "s.txt").item.title
    assert title.lower().replace("-", " ").split() == ["a"] * slug_words


@settings(max_examples=8, deadline=BUDGET, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(
        ["*a ", "[", "[a](", "a_ ", "`a ", "<a ", "&a", "![a", "**a*", "# ", "> ", "- ", "[a](#) [1] "]
    ),
    st.integers(5_000, 20_000),
)
def test_bodies_repeating_markdown_syntax_parse_in_linear_time(unit: str, count: int) -> None:
    """Hundreds of kilobytes of repeated Markdown punctuation give an item within the budget."""
    item = parse_text(unit * count + SOURCE.format(slug="des-mots"), "m.txt").item
    assert item.url.endswith("/des-mots")


@settings(max_examples=6, deadline=BUDGET, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["![a", "**a*", "[a](", "[", "* a\n\n", "[\n\n", "* a\n\nx\n\n", "> [\n"]),
    st.integers(150_000, 250_000),
)
def test_half_a_megabyte_of_markdown_syntax_parses_within_the_budget(unit: str, count: int) -> None:
    """Hundreds of kilobytes of one Markdown construct, in one paragraph or in thousands of
    blocks (quadratic for markdown-it, or for the grouping of blocks, before) parse in time."""
    item = parse_text(unit * count + SOURCE.format(slug="des-mots"), "m.txt").item
    assert item.url.endswith("/des-mots") and item.body_html


def test_an_item_over_max_size_is_a_located_error_and_the_others_are_stored(run: Run, project: Path) -> None:
    """With `items.max_size: 8 KiB`, a larger file is an error naming the line where the limit
    falls, read no further; every other file is stored and exit is 1."""
    config = project / "config.yaml"
    config.write_text(
        config.read_text(encoding="utf-8").replace("items:\n", "items:\n  max_size: 8 KiB\n", 1),
        encoding="utf-8",
    )
    assert "max_size: 8 KiB" in config.read_text(encoding="utf-8")
    count = len(list((project / "items").glob("*.txt")))
    (project / "items" / "zz-huge.txt").write_text("Une ligne de texte.\n" * 10000, encoding="utf-8")
    result = run("ingest")
    assert result.code == 1
    assert result.out == f"{count} new, 0 updated, 0 unchanged, 1 errors\n"
    assert result.err == (
        "items/zz-huge.txt:410: larger than items.max_size (8,192 bytes), so not read; an item is a "
        "few kilobytes: check that this is the right file, else raise items.max_size in config.yaml\n"
    )
    checked = run("check")
    assert checked.code == 1 and "items/zz-huge.txt:410: larger than items.max_size" in checked.err


def test_parse_refuses_a_32_mb_file_at_once_by_default(run: Run, project: Path) -> None:
    """Without `items.max_size`, 2 MiB is the limit: a 32 MB file is refused in well under a
    second instead of taking a gigabyte and fourteen seconds."""
    huge = project / "huge.txt"
    huge.write_bytes(b"Du texte sans fin. " * (32 * 1024 * 1024 // 19))
    started = time.monotonic()
    result = run("parse", str(huge), "--json")
    assert time.monotonic() - started < 1.5
    assert result.code == 1 and result.out == ""
    assert result.err.startswith(f"{huge}:1: larger than items.max_size (2,097,152 bytes)")


def test_a_slug_word_elided_in_the_body_takes_its_accents() -> None:
    """`evaluation-…` over a body starting `L'évaluation` gives `Évaluation des contrats…`; the
    other elisions (`d'`, `qu'`, `jusqu'`…) offer their word too."""
    body = (
        "L'évaluation des contrats de ville est achevée. Le rapport final est publié. "
        "Jusqu'à présent, l'accès était réservé; lorsqu'écoles et associations s'étaient réunies, "
        "qu'Amiens l'avait accueilli."
    )
    text = body + SOURCE.format(slug="evaluation-des-contrats-de-ville-le-rapport-final")
    assert parse_text(text, "e.txt").item.title == "Évaluation des contrats de ville le rapport final"
    text = body + SOURCE.format(slug="a-present-acces-des-ecoles-a-amiens")
    assert parse_text(text, "e.txt").item.title == "À présent accès des écoles à Amiens"


def test_a_paragraph_beyond_the_markdown_bounds_is_escaped_plain_text() -> None:
    """A paragraph of more than 20,000 characters is shown as plain text: its Markdown is not
    interpreted and its HTML is escaped, never let through."""
    paragraph = "<script>alert(1)</script> *pas en italique* [lien](javascript:alert(1)) " * 400
    item = parse_text(paragraph + "\n\nUn *second* paragraphe." + SOURCE.format(slug="x"), "p.txt").item
    first, second = item.body_html.split("\n")
    assert first.startswith("<p>&lt;script&gt;alert(1)&lt;/script&gt; *pas en italique* [lien](javascript")
    assert "<a" not in first and "<script" not in first
    assert second == "<p>Un <em>second</em> paragraphe.</p>"

"""The item parser: every field of the export format, read the way an editor wrote it."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest

from syndicator.errors import ItemError
from syndicator.parsing.items import ParsedItem, parse_bytes, parse_file, parse_text, size_in_bytes

from .support import ITEMS, SEED, item_text


def parse(text: str) -> ParsedItem:
    return parse_text(text, "x.txt")


def test_seed_parses_to_exactly_its_fields() -> None:
    """The real item from the website gives its title, terms, dates and attachment."""
    parsed = parse_file(SEED)
    item = parsed.item
    assert parsed.warnings == ()
    assert item.url == (
        "https://www.irev.fr/actualites-0/lassemblee-generale-du-gip-irev-adopte-le-programme-dactions-2022"
    )
    title = item.title.lower().replace("adopté", "adopte")
    assert title == "l'assemblée générale du gip irev adopte le programme d'actions 2022"
    assert item.title.startswith("L'") and "GIP IREV" in item.title
    assert item.type is not None and item.type.name == "Actu de l'IREV"
    assert item.type.url == "https://www.irev.fr/taxonomy/term/4314"
    assert [(t.name, t.url) for t in item.thematiques] == [
        ("Politique de la ville - DSU", "https://www.irev.fr/taxonomy/term/3692")
    ]
    assert [(t.name, t.url) for t in item.territoires] == [
        ("Région Hauts de France", "https://www.irev.fr/region-hauts-de-france-1")
    ]
    assert item.event_start is not None and item.event_start.isoformat() == "2021-11-19T09:00:00+01:00"
    assert item.event_end is None
    assert item.published == date(2021, 11, 30)
    assert item.modified is not None and item.modified.isoformat() == "2021-11-30T11:29:00+01:00"
    [attachment] = item.attachments
    assert attachment.url.endswith("/deliberation_2_-_annexe_orientations_2022.pdf")
    assert attachment.size_bytes == round(1.8 * 1024 * 1024)
    assert attachment.mime_type == "application/pdf"
    assert item.summary.startswith("Les membres du GIP IREV se sont réunis")
    assert "<ul>" in item.body_html and "<li>La lutte contre les ségrégations" in item.body_html
    assert "<em>" in item.body_html


def test_seed_json_has_the_design_shape() -> None:
    """`parse --json` objects carry exactly the keys docs/architecture.md lists (JSON shapes)."""
    data = parse_file(SEED).item.to_json()
    assert list(data) == [
        "id", "url", "file", "title", "type", "thematiques", "territoires", "published", "modified",
        "event_start", "event_end", "attachments", "summary", "body_html",
    ]  # fmt: skip
    assert data["id"] == data["url"]
    assert data["attachments"] == [
        {
            "url": "https://www.irev.fr/sites/default/files/atoms/files/deliberation_2_-_annexe_orientations_2022.pdf",
            "size_bytes": 1887437,
            "mime_type": "application/pdf",
        }
    ]


def test_ui_cruft_never_reaches_the_body() -> None:
    """`Favoris +`, `javascript:` links, the download line and the fields stay out of the HTML."""
    html = parse_file(SEED).item.body_html
    for cruft in (
        "Favoris",
        "javascript",
        "Téléchargement",
        "Poids",
        "Thématiques",
        "Liens",
        "URL de la source",
    ):
        assert cruft not in html


@pytest.mark.parametrize(
    ("slug", "body", "title"),
    [
        ("les-voeux-de-lirev", "Les vœux de l'IREV pour la nouvelle année.", "Les vœux de l'IREV"),
        (
            "appel-a-projets-quartiers-dete-a-amiens",
            "La ville a lancé un appel à projets. Les quartiers d'été reviennent à Amiens.",
            "Appel à projets quartiers d'été à Amiens",
        ),
        (
            "la-ville-a-lance-un-appel-a-candidatures",
            "Cette année, la ville a lancé un appel à candidatures.",
            "La ville a lancé un appel à candidatures",
        ),
        ("un-mot-absent-du-corps", "Rien à voir.", "Un mot absent du corps"),
        ("le-gip-irev-recrute", "Le GIP IREV recrute un chargé de mission.", "Le GIP IREV recrute"),
        ("lens-lievin", "La CA de Lens - Liévin.", "Lens - Liévin"),
    ],
)
def test_title_is_restored_from_the_slug_with_the_body_spelling(slug: str, body: str, title: str) -> None:
    """Each slug word takes the accents, apostrophe and case its neighbours choose in the body."""
    item = parse(item_text(f"https://www.irev.fr/actualites-0/{slug}", body=body)).item
    assert item.title == title


@pytest.mark.parametrize("first_line", ["# Un titre explicite", "Titre: Un titre explicite"])
def test_an_explicit_title_wins_over_the_slug(first_line: str) -> None:
    """A first line `# ...` or `Titre: ...` is the title, and leaves the body."""
    item = parse(first_line + "\n" + item_text(body="Le corps ne parle pas du titre.")).item
    assert item.title == "Un titre explicite"
    assert "explicite" not in item.body_html


class _Elements(HTMLParser):
    """The elements and attributes of an HTML fragment, as a browser would see them."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))


def assert_harmless(html: str) -> None:
    for tag, attrs in _Elements(html).tags:
        assert tag not in ("script", "style", "iframe", "img", "object"), html
        assert not any(name.startswith("on") for name in attrs), html
        href = (attrs.get("href") or "").strip().lower()
        assert not href or href.startswith(("http://", "https://", "mailto:")), html


def test_reference_links_resolve_to_their_numbered_urls() -> None:
    """`[text](#) [N]` points at the Nth URL of `Liens`; a javascript: target keeps only its text."""
    body = "Voir [le document](#) [1] et [ce lien](#) [2]."
    html = parse(item_text(body=body)).item.body_html
    assert (
        html
        == '<p>Voir <a href="https://www.irev.fr/sites/default/files/doc.pdf">le document</a> et ce lien.</p>'
    )


def test_relative_links_become_absolute() -> None:
    """A link relative to the website is made absolute against the source URL."""
    html = parse(item_text(body="Voir [la page](/node/12).")).item.body_html
    assert '<a href="https://www.irev.fr/node/12">la page</a>' in html


@pytest.mark.parametrize(
    "body",
    [
        "<script>alert(1)</script>",
        '<img src=x onerror="alert(2)">',
        '<a href="javascript:x" onclick="y">a</a> <b onmouseover=z>b</b>',
        "[x](JaVaScRiPt:alert(1)) [y](javascript%3Aalert(1))",
        "<div>\n<svg onload=alert(1)>\n</div>",
        "[z](data:text/html;base64,PHNjcmlwdD4=)",
    ],
)
def test_hostile_html_never_survives(body: str) -> None:
    """No `<script>`, `on*=` handler or `javascript:` URL can come out of a body, only text."""
    html = parse(item_text(body=body)).item.body_html
    assert_harmless(html)


def test_summary_is_the_first_paragraph_cut_at_a_word_near_300_characters() -> None:
    """A long first paragraph is cut on a space, with an ellipsis; emphasis markup is dropped."""
    words = "*mot* " + "développement " * 40
    item = parse(item_text(body=words + "\n\nSecond paragraphe.")).item
    assert item.summary.startswith("mot développement")
    assert item.summary.endswith("…")
    assert 250 <= len(item.summary) <= 301
    assert not item.summary[:-1].endswith(" ")
    assert "Second" not in item.summary


@pytest.mark.parametrize(
    ("number", "unit", "expected"),
    [("1.8", "Mo", 1887437), ("2,4", "Mo", 2516582), ("350", "Ko", 358400), ("12", "octets", 12)],
)
def test_sizes_are_binary_multiples(number: str, unit: str, expected: int) -> None:
    """1 Ko is 1024 octets; a decimal point or comma both work."""
    assert size_in_bytes(number, unit) == expected


def test_an_item_may_have_several_attachments() -> None:
    """Each `Poids` goes with the download link that follows it; MIME from the extension."""
    fields = (
        "Poids : 350 Ko\n\n[Téléchargement](#) [1] [Favoris +](#) [2]\n\n"
        "Poids : 2,4 Mo\n\n[Téléchargement](#) [3]\n\n"
    )
    text = item_text(fields=fields).replace(
        "[3] <https://www.irev.fr/taxonomy/term/4314>", "[3] https://www.irev.fr/f/tableau.xlsx"
    )
    item = parse(text).item
    assert [(a.url.rsplit("/", 1)[1], a.size_bytes) for a in item.attachments] == [
        ("doc.pdf", 358400),
        ("tableau.xlsx", 2516582),
    ]
    assert item.attachments[1].mime_type == (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    )


def test_sizes_written_together_before_their_links_pair_in_order() -> None:
    """Two `Poids` lines, then two download links: each link takes its size in order (found by
    hypothesis: this layout once raised IndexError instead of giving an item)."""
    fields = (
        "Poids : 1.8 Mo\n\nPoids : 350 Ko\n\n"
        "[Téléchargement](#) [1] [Favoris +](#) [2]\n\n[Téléchargement](#) [3]\n\n"
    )
    item = parse(item_text(fields=fields)).item
    assert [a.size_bytes for a in item.attachments] == [1887437, 358400]


@pytest.mark.parametrize(
    "line",
    [
        "Thématiques: [Éducation](#) [1], [Santé](#) [3]",
        "Thématiques: [Éducation](#) [1] [Santé](#) [3]",
        "Thematiques : [Éducation](#) [1] , [Santé](#) [3]",
    ],
)
def test_several_terms_on_a_line_whatever_separates_them(line: str) -> None:
    """Terms come one link each, separated by commas, spaces or both."""
    item = parse(item_text(fields=line + "\n\n")).item
    assert [t.name for t in item.thematiques] == ["Éducation", "Santé"]
    assert item.thematiques[1].url == "https://www.irev.fr/taxonomy/term/4314"


def test_terms_may_be_plain_text() -> None:
    """Without links, a comma-separated list still gives the terms."""
    item = parse(item_text(fields="Territoires : Nord, Roubaix\n\nType d'actualites: Événement\n\n")).item
    assert [t.name for t in item.territoires] == ["Nord", "Roubaix"]
    assert item.type is not None and item.type.name == "Événement" and item.type.url is None


def test_event_range_and_summer_time() -> None:
    """`Du ... au ...` gives start and end, with the summer offset in summer."""
    item = parse(
        item_text(fields="Dates: Du mardi 29 mars 2022 - 09:30 au mardi 29 mars 2022 - 17:00\n\n")
    ).item
    assert item.event_start is not None and item.event_end is not None
    assert item.event_start.isoformat() == "2022-03-29T09:30:00+02:00"
    assert item.event_end.isoformat() == "2022-03-29T17:00:00+02:00"


def test_winter_and_summer_offsets_around_the_change() -> None:
    """The day before the spring change is +01:00, the day after is +02:00."""
    before = parse(item_text(fields="Dates: Samedi 28 mars 2026 - 10:00\n\n")).item.event_start
    after = parse(item_text(fields="Dates: Lundi 30 mars 2026 - 10:00\n\n")).item.event_start
    assert before is not None and after is not None
    assert before.utcoffset() == timedelta(hours=1)
    assert after.utcoffset() == timedelta(hours=2)
    skipped = parse(item_text(fields="Dates: Dimanche 29 mars 2026 - 02:30\n\n")).item.event_start
    assert skipped is not None and skipped.isoformat() == "2026-03-29T03:30:00+02:00"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1er mars 2022", date(2022, 3, 1)),
        ("01 mars 2022", date(2022, 3, 1)),
        ("1 août 2023", date(2023, 8, 1)),
    ],
)
def test_published_dates_in_every_spelling(text: str, expected: date) -> None:
    """`Publié le` takes 1, 01 or 1er, and any month."""
    item = parse(item_text().replace("Publié le 30 novembre 2021", f"Publié le {text}")).item
    assert item.published == expected


def test_source_url_without_a_modification_date() -> None:
    """`URL de la source: <url>` alone is enough; the modification date is then unknown."""
    item = parse(item_text(modified=None)).item
    assert item.url == "https://www.irev.fr/actualites-0/un-titre-de-test"
    assert item.modified is None


def test_only_the_source_url_is_required() -> None:
    """A file with nothing but the URL line is an item."""
    item = parse("URL de la source: <https://www.irev.fr/actualites-0/seul>\n").item
    assert item.title == "Seul"
    assert item.type is None and item.thematiques == () and item.attachments == ()
    assert item.published is None and item.summary == ""


def test_bom_crlf_and_forbidden_characters() -> None:
    """A BOM, CRLF line endings and characters XML forbids do not change the item."""
    clean = parse_file(SEED).item
    raw = SEED.read_bytes().decode("utf-8")
    messy = "\ufeff" + raw.replace("\n", "\r\n").replace("membres", "mem\x00\x08bres", 1)
    item = parse_bytes(messy.encode("utf-8").replace(b"\x00", b""), str(SEED)).item
    assert item.to_json() == clean.to_json()


def test_fields_in_another_order() -> None:
    """The footer fields may come in any order."""
    lines = SEED.read_text(encoding="utf-8").split("\n")
    footer_start = next(i for i, line in enumerate(lines) if line.startswith("Poids"))
    links_start = lines.index("Liens")
    footer = [line for line in lines[footer_start:links_start] if line.strip()]
    reordered = lines[:footer_start] + [x for f in reversed(footer) for x in (f, "")] + lines[links_start:]
    item = parse_text("\n".join(reordered), str(SEED)).item
    assert item.to_json() == parse_file(SEED).item.to_json()


@pytest.mark.parametrize(
    ("data", "line", "words"),
    [
        (b"", 1, "empty"),
        (b"\n\n  \n", 1, "empty"),
        (b"line one\nline two\x00\x01\x02", 2, "binary"),
        (b"Texte\n\nsans URL de source.\n", 1, "no source URL"),
        (b"ok\n\xff\xfe broken\n", 2, "UTF-8"),
        (b"URL de la source: <ftp://irev.fr/x>\n", 1, "not an http"),
    ],
)
def test_a_file_that_is_not_an_item_names_file_and_line(data: bytes, line: int, words: str) -> None:
    """Empty, binary, non-UTF-8 or URL-less files raise the project's error, located."""
    with pytest.raises(ItemError) as caught:
        parse_bytes(data, "items/bad.txt")
    assert caught.value.path == "items/bad.txt"
    assert caught.value.line == line
    assert words in caught.value.message
    assert str(caught.value).startswith(f"items/bad.txt:{line}: ")


def test_an_unreadable_date_is_a_warning_not_a_lost_item() -> None:
    """A typo in a date drops that field with a located warning; the item is kept."""
    parsed = parse(item_text(fields="Dates: Mardi 31 février 2022 - 09:00\n\n"))
    assert parsed.item.event_start is None
    [warning] = parsed.warnings
    assert warning.severity == "warning" and warning.line == 5 and "no such day" in warning.message


def test_every_shipped_sample_parses_cleanly() -> None:
    """The demo items carry no warnings and have a title, a type and terms."""
    files = sorted(ITEMS.glob("*.txt"))
    assert len(files) >= 25
    for path in files:
        parsed = parse_file(path)
        assert parsed.warnings == (), path
        assert parsed.item.title and parsed.item.type and parsed.item.thematiques and parsed.item.territoires


def test_samples_cover_the_vocabularies() -> None:
    """The samples cover ≥ 8 thématiques, ≥ 10 territoires, ≥ 4 types, ranges and both size units."""
    items = [parse_file(p).item for p in sorted(ITEMS.glob("*.txt"))]
    assert len({t.name for i in items for t in i.thematiques}) >= 8
    assert len({t.name for i in items for t in i.territoires}) >= 10
    assert len({i.type.name for i in items if i.type}) >= 4
    assert any(i.event_end for i in items) and any(i.event_start and not i.event_end for i in items)
    assert any(len(i.attachments) > 1 for i in items)
    sizes = [a.size_bytes for i in items for a in i.attachments if a.size_bytes]
    assert any(s < 1024 * 1024 for s in sizes) and any(s > 1024 * 1024 for s in sizes)


def test_datetimes_are_aware(tmp_path: Path) -> None:
    """Every datetime the parser gives carries its offset."""
    for path in sorted(ITEMS.glob("*.txt")):
        item = parse_file(path).item
        for value in (item.modified, item.event_start, item.event_end):
            assert value is None or (isinstance(value, datetime) and value.utcoffset() is not None)

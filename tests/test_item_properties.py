"""Properties of the parser over arbitrary input: an item or the project's error, nothing else."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from syndicator.errors import ItemError
from syndicator.parsing.items import NewsItem, parse_bytes, parse_text, xml_safe

from .test_items import assert_harmless

XML_FORBIDDEN = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")

FIELD_LINES = [
    "Poids : 1.8 Mo",
    "Poids : 3,5 Ko",
    "[Téléchargement](#) [1] [Favoris +](#) [2]",
    "Type d'actualites: [Actu de l'IREV](#) [3]",
    "Dates: Vendredi 19 novembre 2021 - 09:00",
    "Dates: Du mardi 29 mars 2022 - 09:30 au mardi 29 mars 2022 - 17:00",
    "Thématiques: [Politique de la ville - DSU](#) [4], [Santé](#) [2]",
    "Territoires : [Région Hauts de France](#) [5]",
    "Publié le 1er décembre 2021",
    "URL de la source (modifié le 30/11/2021 - 11:29): <https://www.irev.fr/actualites-0/a-b-c>",
    "URL de la source: <https://www.irev.fr/x/l-ete-a-amiens>",
    "Liens",
    "[1] https://www.irev.fr/f.pdf",
    "[2] <https://www.irev.fr/javascript%3A%3B>",
    "[4] <javascript:alert(1)>",
    "# Titre",
    "- un élément de liste *important*",
    "<script>alert(1)</script> [lien](#) [3]",
]


def item_strings(item: NewsItem) -> list[str]:
    data = item.to_json()
    out = [v for v in data.values() if isinstance(v, str)]
    out += [t for key in ("thematiques", "territoires") for t in data[key]]
    out += [a["url"] for a in data["attachments"]] + [a["mime_type"] or "" for a in data["attachments"]]
    return out


def check(text: str) -> None:
    try:
        item = parse_text(text, "prop.txt").item
    except ItemError as exc:
        assert exc.path == "prop.txt"
        assert exc.line is None or exc.line >= 1
        return
    for value in item_strings(item):
        assert not XML_FORBIDDEN.search(value), value
    assert_harmless(item.body_html)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.text())
def test_any_text_gives_an_item_or_an_item_error(text: str) -> None:
    """Arbitrary text never crashes the parser and never yields a character XML forbids."""
    check(text)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(FIELD_LINES), st.text(max_size=80)), max_size=30))
def test_item_like_text_gives_an_item_or_an_item_error(lines: list[str]) -> None:
    """Field lines mixed with noise, in any order, give an item or the project's error."""
    check("\n".join(lines))


@settings(max_examples=200)
@given(st.binary(max_size=400))
def test_any_bytes_give_an_item_or_an_item_error(data: bytes) -> None:
    """Raw bytes, binary or not, give an item or the project's error."""
    try:
        item = parse_bytes(data + b"\nURL de la source: <https://irev.fr/a>\n", "prop.txt").item
    except ItemError:
        return
    for value in item_strings(item):
        assert not XML_FORBIDDEN.search(value)


@settings(max_examples=300)
@given(st.text(st.one_of(st.characters(), st.sampled_from("\x00\x08\x0b\x0c\x1f\t\n\r\ufffe\uffff\ud800é’"))))
def test_xml_safe_removes_exactly_what_xml_forbids(text: str) -> None:
    """The quick check for forbidden characters never lets one through nor drops anything else."""
    assert xml_safe(text) == XML_FORBIDDEN.sub("", text)

"""The French of what readers see, from config to page: the feeds index and its 404 in the web
pages' layout, the site's title with its article, one name for the product, `1er`, and the
no-break spaces of French typography, checked on real files, a real app and golden files."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import lxml.html
import pytest

from syndicator.config.model import load_config
from syndicator.db.store import Store
from syndicator.feeds.build import update_feeds
from syndicator.ingest.reading import ingest
from syndicator.typography import NBSP, NNBSP
from syndicator.web.app import create_app

from .databases import use_database
from .support import ITEMS, ROOT
from .test_web_feeds import feeds_served
from .web_support import TestClient, text_of

GOLDEN = Path(__file__).parent / "golden"


def project(root: Path, edit: str = "") -> Path:
    """The shipped config.yaml (its `site:` and `web:` lines changed by `edit`, lines of
    `key: value` put after `site:`) and items, ingested, with their feeds built."""
    config_file = Path(shutil.copy(ROOT / "config.yaml", root / "config.yaml"))
    use_database(config_file)
    text = config_file.read_text(encoding="utf-8")
    if edit:
        text = text.replace("site:\n", "site:\n" + edit, 1)
    config_file.write_text(text, encoding="utf-8")
    shutil.copytree(ITEMS, root / "items")
    config = load_config(config_file)
    with Store.open(config.database_url) as store:
        ingest(store, [config.items_path])
        update_feeds(store, config)
    return root


def golden(name: str, actual: str) -> None:
    """`actual` is the golden file `name` (UPDATE_GOLDEN=1 rewrites it)."""
    path = GOLDEN / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.write_text(actual, encoding="utf-8", newline="")
    assert path.read_bytes().decode("utf-8") == actual, f"{name} changed; UPDATE_GOLDEN=1 rewrites it"


def test_feeds_index_is_golden_with_article_and_french_spaces(tmp_path: Path) -> None:
    """The index of the shipped items, as golden: « de l’IREV », not « de IREV »; a no-break
    space before its colons; the web pages' layout (skip link, header, footer)."""
    page = (project(tmp_path) / "feeds" / "index.html").read_text(encoding="utf-8")
    golden("feeds_index.html", page)
    text = text_of(page)
    assert "Suivez les actualités de l’IREV dans votre lecteur de flux" in text
    assert "de IREV" not in text
    assert f"Thunderbird…){NBSP}: copiez" in page
    document = lxml.html.fromstring(page)
    assert document.xpath("//a[@class='evitement' and @href='#contenu']")  # the pages' skip link
    assert document.xpath("//header//a[@href='https://www.irev.fr']")
    assert document.xpath("//footer")


def test_feeds_index_writes_1er_for_a_first_day(tmp_path: Path) -> None:
    """A feed whose newest item was published on the 1st shows `1er mars 2030`, as emails do."""
    root = tmp_path / "site"
    root.mkdir()
    (tmp_path / "items").mkdir()
    seed = next(ITEMS.glob("000_*.txt"))
    text = seed.read_text(encoding="utf-8").replace("Publié le 30 novembre 2021", "Publié le 1er mars 2030")
    shutil.copytree(ITEMS, root / "items")
    (root / "items" / seed.name).write_text(text, encoding="utf-8")
    config_file = Path(shutil.copy(ROOT / "config.yaml", root / "config.yaml"))
    use_database(config_file)
    config = load_config(config_file)
    with Store.open(config.database_url) as store:
        ingest(store, [config.items_path])
        update_feeds(store, config)
    page = text_of((root / "feeds" / "index.html").read_text(encoding="utf-8"))
    assert "1er mars 2030" in page and " 1 mars 2030" not in page


def test_title_with_article_and_product_name_come_from_config(tmp_path: Path) -> None:
    """`site.title_with_article` and `site.newsletter` are what the index, the feeds and the
    pages say: « de la CNIL », « S’inscrire à l’infolettre »."""
    root = project(tmp_path, "  title_with_article: la CNIL\n  newsletter: l'infolettre\n")
    page = text_of((root / "feeds" / "index.html").read_text(encoding="utf-8"))
    assert "Suivez les actualités de la CNIL" in page
    channel = (root / "feeds" / "all.rss").read_text(encoding="utf-8")
    assert "Toutes les actualités de la CNIL" in channel
    config = load_config(root / "config.yaml")
    with TestClient(create_app(config)) as client:
        signup = text_of(client.get("/subscribe").text)
    assert "S’inscrire à l’infolettre" in signup  # the config's straight apostrophe made typographic
    assert "lettre d’information" not in signup


def test_web_pages_get_french_spaces_in_text_not_in_markup(tmp_path: Path) -> None:
    """The sign-up page: a no-break space before its colons and inside « », none in its
    attributes, URLs or CSS."""
    config = load_config(project(tmp_path) / "config.yaml")
    with TestClient(create_app(config)) as client:
        page = client.get("/subscribe").text
    assert f"Votre demande n’est pas envoyée{NBSP}:" not in page  # shown only with problems
    assert re.search(f"qui vous concernent{NBSP}:", page)
    style = re.search(r"<style>(.*?)</style>", page, re.DOTALL)
    assert style is not None and NBSP not in style.group(1) and NNBSP not in style.group(1)
    for attribute in re.findall(r'="([^"]*)"', page):
        assert NBSP not in attribute and NNBSP not in attribute


@pytest.fixture
def lettre(tmp_path: Path) -> Iterator[httpx.Client]:
    """The feeds of a site whose web app is published under a path: https://x.org/lettre/."""
    root = project(tmp_path)
    text = (root / "config.yaml").read_text(encoding="utf-8")
    text = text.replace("  base_url: http://127.0.0.1:8080 ", "  base_url: https://x.org/lettre/ ", 1)
    (root / "config.yaml").write_text(text, encoding="utf-8")
    with feeds_served(load_config(root / "config.yaml")) as client:
        yield client


def test_feeds_404_shares_the_layout_and_links_under_the_base_url_path(lettre: httpx.Client) -> None:
    """« Flux introuvable » is a page of the site (golden), linking to /lettre/feeds/ when
    web.base_url is https://x.org/lettre/, not to a root-relative /feeds/."""
    response = lettre.get("/feeds/nulle-part.rss")
    assert response.status_code == 404
    golden("feeds_404.html", response.text)
    document = lxml.html.fromstring(response.text)
    assert document.xpath("//h1/text()") == ["Flux introuvable"]
    assert document.xpath("//main//a[normalize-space(.)='Voir la liste des flux']/@href") == [
        "/lettre/feeds/"
    ]
    assert document.xpath("//a[@class='evitement']")
    assert 'href="/feeds/"' not in response.text


def test_an_edited_layout_rewrites_the_feeds_index(tmp_path: Path) -> None:
    """The index extends the pages' layout: an admin's web/base.html (even one reading
    `request` or calling `csrf_field()`) is the index's layout at the next `feeds`, with
    nothing else changed."""
    root = project(tmp_path)
    shipped = (ROOT / "templates" / "web" / "base.html").read_text(encoding="utf-8")
    own = shipped.replace(
        "<main id=", "<p>Bandeau de l'admin{{ csrf_field() }}{{ '' if request else '' }}</p>\n<main id=", 1
    )
    assert own != shipped
    (root / "templates" / "web").mkdir(parents=True)
    (root / "templates" / "web" / "base.html").write_text(own, encoding="utf-8")
    config = load_config(root / "config.yaml")
    with Store.open(config.database_url) as store:
        report = update_feeds(store, config)
    assert report.written_files == ["index.html"]
    assert "Bandeau de l’admin" in (root / "feeds" / "index.html").read_text(encoding="utf-8")


def test_sign_up_page_is_golden(tmp_path: Path) -> None:
    """The sign-up page as a visitor gets it (its random CSRF token blanked): the product's one
    name, « de l’IREV », typographic apostrophes and no-break spaces in its text."""
    config = load_config(project(tmp_path) / "config.yaml")
    with TestClient(create_app(config)) as client:
        page = client.get("/subscribe").text
    page = re.sub(r'(name="csrf_token" value=")[^"]+"', r'\1…"', page)
    golden("subscribe.html", page)
    assert "S’inscrire à la lettre d’information" in page
    assert f"les actualités de l’IREV qui vous concernent{NBSP}:" in page

"""Feeds from a real store: valid RSS and Atom read back with feedparser, incremental, deterministic."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path

import feedparser
import pytest

from syndicator.config.model import Config, load_config
from syndicator.db.store import Store
from syndicator.feeds.build import FeedsReport, update_feeds
from syndicator.ingest.reading import ingest
from syndicator.parsing.items import parse_file
from syndicator.taxonomy.terms import slugify

from .databases import database_for, use_database
from .support import ITEMS, ROOT, item_text
from .test_items import assert_harmless

T0 = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
SEED_URL = (
    "https://www.irev.fr/actualites-0/lassemblee-generale-du-gip-irev-adopte-le-programme-dactions-2022"
)


class Site:
    """A project folder with its config, store and feeds, driven through the library."""

    def __init__(self, root: Path) -> None:
        self.root = root
        use_database(Path(shutil.copy(ROOT / "config.yaml", root / "config.yaml")))
        shutil.copytree(ITEMS, root / "items")
        self.config: Config = load_config(root / "config.yaml")
        self.store = Store.open(self.config.database_url)
        self.feeds = self.config.feeds_path

    def ingest(self) -> None:
        report = ingest(self.store, [self.config.items_path], now=T0)
        assert report.errors == []

    def build(self) -> FeedsReport:
        return update_feeds(self.store, self.config)

    def parsed(self, name: str) -> feedparser.FeedParserDict:
        result = feedparser.parse((self.feeds / name).read_bytes())
        assert result.bozo == 0, (name, result.get("bozo_exception"))
        return result

    def snapshot(self) -> dict[str, bytes]:
        return {
            str(p.relative_to(self.feeds)): p.read_bytes()
            for p in sorted(self.feeds.rglob("*"))
            if p.is_file()
        }


@pytest.fixture
def site(tmp_path: Path) -> Site:
    built = Site(tmp_path)
    built.ingest()
    return built


def _items() -> list:  # type: ignore[type-arg]
    return [parse_file(p).item for p in sorted(ITEMS.glob("*.txt"))]


def test_every_feed_parses_back_and_holds_exactly_its_items(site: Site) -> None:
    """Each term's RSS and Atom feeds hold the items tagged with it, nothing else."""
    site.build()
    items = _items()
    expected: dict[str, set[str]] = {"all": {i.url for i in items}}
    for item in items:
        for term in item.terms:
            expected.setdefault(f"{term.vocabulary}/{slugify(term.name)}", set()).add(item.url)
    assert len(expected) > 40
    for stem, urls in expected.items():
        for extension in ("rss", "atom"):
            feed = site.parsed(f"{stem}.{extension}")
            assert {e.link for e in feed.entries} == urls, stem
            assert {e.id for e in feed.entries} == urls


def test_feed_files_match_the_layout(site: Site) -> None:
    """Files sit where docs/feeds.md says, with slugs ASCII, lower-case and hyphenated."""
    site.build()
    files = set(site.snapshot())
    assert {"all.rss", "all.atom", "index.opml", "index.html"} <= files
    assert "thematiques/politique-de-la-ville-dsu.rss" in files
    assert "territoires/region-hauts-de-france.atom" in files
    assert "types/actu-de-l-irev.rss" in files
    for name in files:
        assert name.isascii() and name == name.lower() and " " not in name


def test_rss_channel_and_items_carry_what_readers_need(site: Site) -> None:
    """French title, term page link, self link, lastBuildDate from the data, RFC 822 dates, enclosure."""
    site.build()
    feed = site.parsed("thematiques/politique-de-la-ville-dsu.rss")
    channel = feed.feed
    assert channel.title == "IREV — Thématique\u00a0: Politique de la ville - DSU"
    assert channel.link == "https://www.irev.fr/taxonomy/term/3692"
    assert channel.language == "fr"
    self_links = [link.href for link in channel.links if link.rel == "self"]
    assert self_links == ["https://www.irev.fr/feeds/thematiques/politique-de-la-ville-dsu.rss"]
    entries = feed.entries
    dsu = [i for i in _items() if any(t.name == "Politique de la ville - DSU" for t in i.thematiques)]
    newest_change = max(i.modified for i in dsu if i.modified)
    assert parsedate_to_datetime(channel.updated) == newest_change
    published = [parsedate_to_datetime(e.published) for e in entries]
    assert published == sorted(published, reverse=True), "newest first"
    seed = next(e for e in entries if e.link == SEED_URL)
    assert seed.published == "Tue, 30 Nov 2021 00:00:00 +0100"
    root = ET.parse(site.feeds / "thematiques/politique-de-la-ville-dsu.rss").getroot()
    guids = {g.text: g.get("isPermaLink") for g in root.iter("guid")}
    assert guids[SEED_URL] == "true"
    assert seed.summary.startswith("Les membres du GIP IREV")
    assert seed.content[0].value.startswith("<p>Les membres du GIP IREV")
    assert seed.enclosures[0].href.endswith(".pdf")
    assert seed.enclosures[0].length == "1887437" and seed.enclosures[0].type == "application/pdf"
    assert {(t.term, t.scheme) for t in seed.tags} >= {
        ("Politique de la ville - DSU", "thematiques"),
        ("Région Hauts de France", "territoires"),
        ("Actu de l'IREV", "types"),
    }


def test_rss_description_comes_before_content_encoded(site: Site) -> None:
    """Within an item, description precedes content:encoded (W3C validator rule)."""
    site.build()
    root = ET.parse(site.feeds / "all.rss").getroot()
    for item in root.iter("item"):
        tags = [child.tag for child in item]
        content = "{http://purl.org/rss/1.0/modules/content/}encoded"
        assert tags.index("description") < tags.index(content)


def test_atom_entries_keep_link_relations_and_enclosures(site: Site) -> None:
    """Each attachment is a rel=enclosure link with its type and length (feedgen issue 135)."""
    site.build()
    feed = site.parsed("all.atom")
    assert feed.feed.id == "https://www.irev.fr/feeds/all.atom"
    assert feed.feed.author == "IREV"
    two = next(e for e in feed.entries if "emploi-des-jeunes-des-qpv" in e.link)
    relations = [(link.rel, link.get("type"), link.get("length")) for link in two.links]
    assert relations == [
        ("alternate", "text/html", None),
        ("enclosure", "application/pdf", "1258291"),
        ("enclosure", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", "49152"),
    ]
    assert two.content[0].type == "text/html"
    assert two.summary and two.updated and two.published


def test_an_item_in_two_thematiques_appears_in_both_with_one_guid(site: Site) -> None:
    """The same item is the same entry wherever it appears."""
    site.build()
    url = "https://www.irev.fr/actualites-0/sante-mentale-dans-les-quartiers-prioritaires-une-journee-dechanges-a-lille"
    guids = set()
    for stem in ("thematiques/sante", "thematiques/cohesion-sociale"):
        entry = next(e for e in site.parsed(f"{stem}.rss").entries if e.link == url)
        guids.add(entry.id)
    assert guids == {url}


def test_a_rebuild_is_byte_identical_and_writes_nothing(site: Site) -> None:
    """Nothing changed: nothing written, every file as it was, even when built in a new store."""
    first = site.build()
    assert first.written > 0 and first.removed == 0
    before = site.snapshot()
    again = site.build()
    assert (again.written, again.removed) == (0, 0)
    assert again.unchanged == len(before)
    assert site.snapshot() == before

    site.store.close()
    site.store = Store.open(database_for(site.root, "fresh.db"))
    site.ingest()
    rebuilt = site.build()
    assert rebuilt.written == 0, "a new store with the same items gives the same bytes"


def test_only_the_feeds_of_a_new_item_are_rewritten(site: Site) -> None:
    """A new item rewrites its own feeds, all.*, and the indexes; nothing else."""
    site.build()
    fields = (
        "Type d'actualites: [Publication](#) [3]\n\n"
        "Thématiques: [Culture](#) [1]\n\nTerritoires : [Roubaix](#) [2]\n\n"
    )
    (site.root / "items" / "zz_new.txt").write_text(
        item_text("https://www.irev.fr/actualites-0/un-titre-de-test", fields=fields), encoding="utf-8"
    )
    site.ingest()
    report = site.build()
    indexes = {"index.opml", "index.html"}
    assert set(report.written_files) - indexes == {
        f"{stem}.{ext}"
        for stem in ("all", "thematiques/culture", "territoires/roubaix", "types/publication")
        for ext in ("rss", "atom")
    }
    assert report.written == len(report.written_files)
    assert report.removed == 0


def test_a_term_left_without_items_leaves_the_index(site: Site) -> None:
    """When no item carries a term any more, its feeds are removed and the indexes drop it."""
    site.build()
    culture = [p for p in (site.root / "items").glob("*.txt") if "[Culture]" in p.read_text(encoding="utf-8")]
    for path in culture:
        path.write_text(
            path.read_text(encoding="utf-8").replace("[Culture](#)", "[Santé](#)"), encoding="utf-8"
        )
    site.ingest()
    report = site.build()
    assert report.removed == 2
    assert not (site.feeds / "thematiques" / "culture.rss").exists()
    assert "culture.rss" not in (site.feeds / "index.opml").read_text(encoding="utf-8")
    assert "thematiques/culture.rss" not in (site.feeds / "index.html").read_text(encoding="utf-8")


def test_a_long_lived_store_sees_items_added_and_changed_since_it_last_looked(site: Site) -> None:
    """The daemon keeps one store open, which keeps the items' stamps between cycles: after an
    item changes its terms and another is added, it gives what a store opened afresh gives."""
    before = {s.url: s for s in site.store.item_stamps()}
    culture = next(
        p for p in (site.root / "items").glob("*.txt") if "[Culture]" in p.read_text(encoding="utf-8")
    )
    culture.write_text(
        culture.read_text(encoding="utf-8").replace("[Culture](#)", "[Santé](#)"), encoding="utf-8"
    )
    (site.root / "items" / "zz_new.txt").write_text(item_text("https://www.irev.fr/actualites-0/nouvelle"))
    site.ingest()
    after = site.store.item_stamps()
    with Store.open(site.config.database_url) as fresh:
        assert sorted(after, key=lambda s: s.id) == sorted(fresh.item_stamps(), key=lambda s: s.id)
    changed = {s.url for s in after if before.get(s.url) != s}
    assert len(changed) == 2
    assert "https://www.irev.fr/actualites-0/nouvelle" in changed


def test_max_items_limits_each_feed(site: Site) -> None:
    """`feeds.max_items` caps every feed, keeping the newest."""
    site.config = site.config.model_copy(
        update={"feeds": site.config.feeds.model_copy(update={"max_items": 3})}
    )
    site.build()
    entries = site.parsed("all.rss").entries
    newest = sorted((i for i in _items() if i.published), key=lambda i: i.published, reverse=True)[:3]
    assert [e.link for e in entries] == [i.url for i in newest]


def test_hostile_items_never_reach_a_feed_raw(tmp_path: Path) -> None:
    """Control characters and scripts from an item never appear in a feed; odd names are safe."""
    site = Site(tmp_path)
    for path in (tmp_path / "items").glob("*.txt"):
        path.unlink()
    body = "Titre \x07piégé <script>alert(1)</script> & <b onclick=x>gras</b>\x1b[31m"
    fields = (
        'Thématiques: [Santé & <Social> / "Quartiers"](#) [1], [Sante](#) [2], [???](#) [3]\n\n'
        "Territoires : [L'Île-d'Abbeville](#) [1]\n\n"
    )
    (tmp_path / "items" / "a.txt").write_text(
        item_text("https://www.irev.fr/actualites-0/titre-piege", body=body, fields=fields), encoding="utf-8"
    )
    site.ingest()
    site.build()
    files = site.snapshot()
    assert set(files) >= {
        "thematiques/sante-social-quartiers.rss", "thematiques/sante.rss", "thematiques/terme.rss",
        "territoires/l-ile-d-abbeville.rss",
    }  # fmt: skip
    for name, data in files.items():
        text = data.decode("utf-8")
        assert "\x07" not in text and "\x1b" not in text, name
        if name.endswith((".rss", ".atom")):
            root = ET.fromstring(data)
            for element in root.iter():
                local = element.tag.rsplit("}", 1)[-1]
                as_html = local in ("description", "encoded") or element.get("type") == "html"
                if as_html and element.text:
                    assert_harmless(element.text)  # what a reader renders as HTML
    feed = site.parsed("thematiques/sante-social-quartiers.rss")
    assert feed.feed.title == 'IREV — Thématique\u00a0: Santé & <Social> / "Quartiers"'
    assert "<script" not in feed.entries[0].content[0].value


def test_opml_lists_every_feed_grouped_by_vocabulary(site: Site) -> None:
    """index.opml: OPML 2.0, one rss outline per feed with its public URL, grouped."""
    site.build()
    root = ET.parse(site.feeds / "index.opml").getroot()
    assert root.get("version") == "2.0"
    body = root.find("body")
    assert body is not None
    groups = {g.get("text"): g for g in body if g.get("type") is None}
    assert set(groups) == {"Thématiques", "Territoires", "Types d’actualités"}
    dsu = next(o for o in groups["Thématiques"] if o.get("text") == "Politique de la ville - DSU")
    assert dsu.get("type") == "rss"
    assert dsu.get("xmlUrl") == "https://www.irev.fr/feeds/thematiques/politique-de-la-ville-dsu.rss"
    assert dsu.get("htmlUrl") == "https://www.irev.fr/taxonomy/term/3692"
    outlines = [o for o in root.iter("outline") if o.get("type") == "rss"]
    assert len(outlines) == len([f for f in site.snapshot() if f.endswith(".rss")])


def test_index_html_is_french_with_autodiscovery(site: Site) -> None:
    """index.html lists every feed with its count and latest date, and links the main feeds."""
    site.build()
    page = (site.feeds / "index.html").read_text(encoding="utf-8")
    assert '<html lang="fr"' in page
    assert '<link rel="alternate" type="application/rss+xml"' in page and 'href="all.rss"' in page
    assert '<link rel="alternate" type="application/atom+xml"' in page
    assert "Politique de la ville - DSU" in page and "thematiques/politique-de-la-ville-dsu.atom" in page
    assert "26 novembre 2026" in page  # the newest publication, in French


def test_feeds_command_and_run_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`syndicator feeds` reports written/unchanged/removed; `run --once` builds feeds after ingest."""
    from syndicator.cli.main import main

    Site(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--once"]) == 0
    assert (tmp_path / "feeds" / "all.rss").exists()
    assert main(["feeds"]) == 0

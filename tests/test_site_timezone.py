"""The site's zone (`site.timezone`) is the one zone of local days and times: the item files'
dates are read in it, feeds date items in it, the digests' look-back counts its days, and the
emails, templates and the run-lock refusal show its times. Each behaviour runs for a Paris site
(where nothing changes) and for resource centres in Réunion (UTC+4) and Guadeloupe (UTC−4)."""

from __future__ import annotations

import email
import email.policy
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import feedparser
import pytest

from syndicator.config.model import Config, load_config, parse_config
from syndicator.db.store import Store
from syndicator.digests.send import Digests, explain, send_digests
from syndicator.feeds.build import update_feeds
from syndicator.ingest.reading import ingest
from syndicator.privacy.export import export
from syndicator.templating import environment
from syndicator.web.signup_email import confirmation_email

from . import databases
from .conftest import Run
from .support import item_text
from .test_runlock_hardening import holder
from .test_signup import request

ZONES = ("Europe/Paris", "Indian/Reunion", "America/Guadeloupe")
NBSP = "\u00a0"
URL = "https://www.irev.fr/actualites-0/{slug}"


def config_text(zone: str) -> str:
    """A site in `zone`, one daily subscriber to everything, a one-day look-back."""
    return (
        f"site: {{title: IREV, timezone: {zone}}}\n"
        "email:\n  from: 'IREV <lettre@example.org>'\n"
        "  lookback_days: {immediate: 1, daily: 1, weekly: 1, monthly: 1}\n"
        "web: {base_url: 'https://lettre.example.org'}\n"
        "subscribers:\n  - email: a@example.org\n    frequency: daily\n"
    )


def local_item(slug: str, published: str, modified: str, fields: str = "") -> str:
    """An item file as the website writes it: its dates are the site's local ones."""
    text = item_text(URL.format(slug=slug), modified=modified, fields=fields)
    return text.replace("Publié le 30 novembre 2021", f"Publié le {published}")


class Site:
    """A project folder for a site in one zone: config.yaml, items/, its store; library-driven."""

    def __init__(self, root: Path, zone: str) -> None:
        self.root, self.zone = root, ZoneInfo(zone)
        (root / "items").mkdir()
        databases.use_database(root / "config.yaml", config_text(zone))
        self.config: Config = load_config(root / "config.yaml")
        self.store = Store.open(self.config.database_url)

    def write(self, name: str, text: str) -> None:
        (self.root / "items" / name).write_text(text, encoding="utf-8")

    def ingest(self, now: datetime) -> None:
        report = ingest(self.store, [self.config.items_path], now=now, zone=self.config.site.zone)
        assert report.errors == [] and report.warnings == []


@pytest.fixture(params=ZONES)
def site(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Site]:
    made = Site(tmp_path, request.param)
    try:
        yield made
    finally:
        made.store.close()


def test_feeds_date_an_item_on_its_local_publication_day_and_change_time(site: Site) -> None:
    """An item "Publié le 4 décembre 2026", modified "04/12/2026 - 09:30" at the site: RSS and
    Atom say it was published at the start of 4 December and updated at 9:30, the site's time,
    with the site's offset written (a Paris site's feeds stay as they were: +0100)."""
    site.write("a.txt", local_item("le-4-decembre", "4 décembre 2026", "04/12/2026 - 09:30"))
    site.ingest(datetime(2026, 12, 4, 6, 0, tzinfo=UTC))
    update_feeds(site.store, site.config)
    feeds = site.config.feeds_path
    rss = feedparser.parse((feeds / "all.rss").read_bytes())
    atom = feedparser.parse((feeds / "all.atom").read_bytes())
    assert rss.bozo == 0 and atom.bozo == 0
    [rss_entry], [atom_entry] = rss.entries, atom.entries
    start_of_day = datetime(2026, 12, 4, tzinfo=site.zone)
    changed = datetime(2026, 12, 4, 9, 30, tzinfo=site.zone)
    offset = start_of_day.strftime("%z")
    assert rss_entry.published == f"Fri, 04 Dec 2026 00:00:00 {offset}"
    assert parsedate_to_datetime(rss_entry.published) == start_of_day
    assert parsedate_to_datetime(rss.feed.updated) == changed
    assert datetime.fromisoformat(atom_entry.updated) == changed
    assert datetime.fromisoformat(atom_entry.published) == start_of_day
    if site.zone.key == "Europe/Paris":
        assert rss_entry.published == "Fri, 04 Dec 2026 00:00:00 +0100"
        assert atom_entry.updated == "2026-12-04T09:30:00+01:00"


# (zone, the local wall-clock time of the run, whether the item of 3 December is still within
# a one-day look-back): the site's days decide, not Paris's.
LOOKBACK_CASES = [
    ("Europe/Paris", datetime(2026, 12, 4, 22, 0), True),
    ("Indian/Reunion", datetime(2026, 12, 5, 1, 0), False),  # 4 December, 22:00 in Paris
    ("America/Guadeloupe", datetime(2026, 12, 4, 22, 0), True),  # 5 December, 3:00 in Paris
]


@pytest.mark.parametrize(("zone", "wall", "kept"), LOOKBACK_CASES, ids=[c[0] for c in LOOKBACK_CASES])
def test_the_daily_digest_counts_the_look_back_in_the_sites_days(
    tmp_path: Path, zone: str, wall: datetime, kept: bool
) -> None:
    """A daily digest with a one-day look-back, run late in the evening or just after midnight
    at the site: the item of 3 December is in it exactly when 3 December is yesterday or today
    there; the event of the item of 4 December, "10 décembre 2026 - 10:00" on the website, shows
    at 10 h; the Date header and the subject give the site's time and day; `explain` agrees."""
    site = Site(tmp_path, zone)
    site.write("a.txt", local_item("le-3-decembre", "3 décembre 2026", "03/12/2026 - 08:00"))
    event = "Dates: Jeudi 10 décembre 2026 - 10:00\n\n"
    site.write("b.txt", local_item("le-4-decembre", "4 décembre 2026", "04/12/2026 - 08:00", event))
    site.ingest(datetime(2026, 12, 3, 12, 0, tzinfo=UTC))
    now = wall.replace(tzinfo=site.zone).astimezone(UTC)
    with site.store:
        digests = Digests(site.store, site.config, now=now)
        subscriber = digests.subscriber("a@example.org")
        assert subscriber is not None
        ok, lines = explain(digests, subscriber, URL.format(slug="le-3-decembre"))
        assert ok is kept, lines
        report = send_digests(Digests(site.store, site.config, now=now))
    assert report.sent == 1
    [path] = (tmp_path / "outbox").glob("*.eml")
    message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert ("le-3-decembre" in text) is kept
    assert "le-4-decembre" in text
    assert f"10 décembre 2026 à 10{NBSP}h" in text, text
    assert message["Date"] == wall.replace(tzinfo=site.zone).strftime("%a, %d %b %Y %H:%M:%S %z")
    assert message["Subject"].endswith(f"du {wall.day} décembre 2026")


@pytest.mark.parametrize("zone", ZONES)
def test_template_date_filters_show_the_sites_local_time(tmp_path: Path, zone: str) -> None:
    """`french_date` and `french_datetime` in the environment a run renders with give an
    instant's day and time at the site: 4 December, 2:30 UTC."""
    site = Site(tmp_path, zone)
    with site.store:
        env = Digests(site.store, site.config, now=datetime(2026, 12, 4, tzinfo=UTC)).env
    moment = datetime(2026, 12, 4, 2, 30, tzinfo=UTC)
    shown = env.from_string("{{ t | french_date }} / {{ t | french_datetime }}").render(t=moment)
    expected = {
        "Europe/Paris": f"4 décembre 2026 / vendredi 4 décembre 2026 à 3{NBSP}h{NBSP}30",
        "Indian/Reunion": f"4 décembre 2026 / vendredi 4 décembre 2026 à 6{NBSP}h{NBSP}30",
        "America/Guadeloupe": f"3 décembre 2026 / jeudi 3 décembre 2026 à 22{NBSP}h{NBSP}30",
    }
    assert shown == expected[zone]


@pytest.mark.parametrize("zone", ZONES)
def test_the_signup_email_and_the_export_give_the_sites_time(tmp_path: Path, zone: str) -> None:
    """A sign-up made at 10:00 UTC on 26 November: its confirmation email says the link works
    until 28 November at the site's hour, and the person's data export gives the request's
    times with the site's offset (a Paris site's, as before: 11 h, +01:00)."""
    config = parse_config(config_text(zone), tmp_path / "config.yaml")
    local_hour = {"Europe/Paris": 11, "Indian/Reunion": 14, "America/Guadeloupe": 6}[zone]
    with Store.open(databases.database_for(tmp_path, "store.db")) as store:
        signup = request(store)
        message = confirmation_email(environment(None, config.site.zone), config, signup,
                                     confirm_url="https://x/c", subscribe_url="https://x/s")  # fmt: skip
        exported = export(config, store, signup.subscriber.email, now=datetime(2026, 11, 26, 11, tzinfo=UTC))
    plain = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert f"jusqu’au samedi 28 novembre 2026 à {local_hour}{NBSP}h" in plain
    assert exported is not None
    [kept] = exported["signup_requests"]
    created = datetime(2026, 11, 26, 10, tzinfo=UTC).astimezone(ZoneInfo(zone))
    assert kept["created"] == created.isoformat()


@pytest.mark.parametrize("zone", ["Europe/Paris", "Indian/Reunion"])
def test_parse_json_gives_the_item_dates_in_the_sites_zone(run: Run, tmp_path: Path, zone: str) -> None:
    """`syndicator parse --json` reads "modifié le 04/12/2026 - 09:30" and an event at 10:00 as
    the site's times: `+04:00` in Réunion, `+01:00` (as always) in Paris."""
    databases.use_database(tmp_path / "config.yaml", config_text(zone))
    item = tmp_path / "a.txt"
    event = "Dates: Jeudi 10 décembre 2026 - 10:00\n\n"
    item.write_text(local_item("le-4-decembre", "4 décembre 2026", "04/12/2026 - 09:30", event), "utf-8")
    result = run("parse", "--json", "--config", str(tmp_path / "config.yaml"), str(item))
    assert result.code == 0, result.err
    parsed = json.loads(result.out)
    offset = {"Europe/Paris": "+01:00", "Indian/Reunion": "+04:00"}[zone]
    assert parsed["published"] == "2026-12-04"
    assert parsed["modified"] == f"2026-12-04T09:30:00{offset}"
    assert parsed["event_start"] == f"2026-12-10T10:00:00{offset}"


@pytest.fixture
def machine_in_tokyo(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's own zone set to one no site here uses, so a time shown in it is told apart."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("machine_in_tokyo")
@pytest.mark.parametrize("zone", ZONES)
def test_the_run_lock_refusal_gives_the_holders_start_in_the_sites_zone(
    run: Run, tmp_path: Path, zone: str
) -> None:
    """`run --once` while another runner holds the store, which it took at midnight UTC on
    1 January 2026: the refusal names when, in the site's zone and saying which."""
    config_file = databases.use_database(tmp_path / "config.yaml", config_text(zone))
    (tmp_path / "items").mkdir()
    url = load_config(config_file).database_url
    Store.open(url).close()
    process = holder(url, "elsewhere")
    try:
        result = run("run", "--once", "--config", str(config_file))
    finally:
        process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()
    since = {
        "Europe/Paris": "2026-01-01 01:00:00 CET",
        "Indian/Reunion": "2026-01-01 04:00:00 +04",
        "America/Guadeloupe": "2025-12-31 20:00:00 AST",
    }[zone]
    assert result.code != 0
    assert f"another syndicator runs on this store: pid 999999999 on elsewhere, since {since}" in result.err


def test_an_admin_who_sets_the_zone_after_a_first_ingest_gets_the_items_read_again(
    run: Run, tmp_path: Path
) -> None:
    """Items ingested while `site.timezone` was the default (Paris), then the admin sets the
    site's zone: the next `ingest` reads every file again and the item's times become the
    site's; the one after reads nothing."""
    config_file = databases.use_database(tmp_path / "config.yaml", config_text("Europe/Paris"))
    (tmp_path / "items").mkdir()
    item = local_item("le-4-decembre", "4 décembre 2026", "04/12/2026 - 09:30")
    (tmp_path / "items" / "a.txt").write_text(item, encoding="utf-8")
    assert run("ingest", "--config", str(config_file)).out.startswith("1 new, 0 updated, 0 unchanged")
    databases.use_database(config_file, config_text("Indian/Reunion"))
    assert run("ingest", "--config", str(config_file)).out.startswith("0 new, 1 updated, 0 unchanged")
    assert run("ingest", "--config", str(config_file)).out.startswith("0 new, 0 updated, 1 unchanged")
    with Store.open(load_config(config_file).database_url) as store:
        [stored] = store.items()
    assert stored.modified == datetime(2026, 12, 4, 9, 30, tzinfo=ZoneInfo("Indian/Reunion"))

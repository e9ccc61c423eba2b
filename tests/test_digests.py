"""Digests end to end on a real store: who gets what, once, in well-formed French emails."""

from __future__ import annotations

import base64
import dataclasses
import email
import email.policy
import itertools
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from syndicator.config.frequencies import FREQUENCIES
from syndicator.config.model import Config, DkimConfig, parse_config
from syndicator.db.ledger import Ledger, LedgerRow
from syndicator.db.store import Store
from syndicator.digests.explain import explain
from syndicator.digests.run import DigestRun
from syndicator.digests.select import Digest
from syndicator.digests.send import send_digests
from syndicator.ingest.reading import ingest
from syndicator.parsing.items import NewsItem, parse_file
from syndicator.taxonomy.terms import term_key
from syndicator.taxonomy.territoires import Hierarchy

from .databases import use_database
from .support import ITEMS, item_text

PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2026, 11, 20, 7, 0, tzinfo=UTC)  # when the samples were ingested
NOW = datetime(2026, 11, 26, 8, 0, tzinfo=PARIS)
LONG = "{immediate: 4000, daily: 4000, weekly: 4000, monthly: 4000}"

THEMATIQUES = [[], ["Politique de la ville - DSU"], ["sante"], ["Habitat - Renouvellement urbain", "Culture"]]
TERRITOIRES = [
    [],
    ["Région Hauts de France"],
    ["Nord"],
    ["Métropole Européenne de Lille"],
    ["Roubaix"],
    ["Amiens"],
]
TYPES = [[], ["Événement"], ["actu-de-l-irev", "Publication"]]


def config_text(subscribers: str, lookback: str = LONG) -> str:
    return (
        "site: {title: IREV}\n"
        f"email:\n  from: 'IREV <lettre@example.org>'\n  lookback_days: {lookback}\n"
        "web: {base_url: 'https://lettre.example.org'}\n"
        f"subscribers:\n{subscribers}"
    )


def subscriber_yaml(
    email_: str, frequency: str, thematiques: list[str], territoires: list[str], types: list[str], *,
    name: str | None = None,
) -> str:  # fmt: skip
    lines = [f"  - email: {email_}", f"    frequency: {frequency}"]
    lines += [f"    name: {name}"] if name else []
    for key, values in (("thematiques", thematiques), ("territoires", territoires), ("types", types)):
        if values:
            lines.append(f"    {key}: [{', '.join(values)}]")
    return "\n".join(lines) + "\n"


class Project:
    """A folder with items, a config and a store, digests driven through the library."""

    def __init__(self, root: Path, subscribers: str, lookback: str = LONG) -> None:
        self.root = root
        shutil.copytree(ITEMS, root / "items")
        use_database(root / "config.yaml", config_text(subscribers, lookback))
        self.config: Config = parse_config(
            (root / "config.yaml").read_text(encoding="utf-8"), root / "config.yaml"
        )
        self.store = Store.open(self.config.database_url)
        self.ingest(T0)

    def ingest(self, when: datetime) -> None:
        assert ingest(self.store, [self.config.items_path], now=when).errors == []

    def digests(self, now: datetime = NOW) -> DigestRun:
        return DigestRun(self.store, self.config, now=now)

    def outbox(self) -> list[email.message.EmailMessage]:
        folder = self.root / "outbox"
        files = sorted(folder.glob("*.eml")) if folder.exists() else []
        return [email.message_from_bytes(p.read_bytes(), policy=email.policy.default) for p in files]


def oracle(item: NewsItem, interests: tuple[list[str], list[str], list[str]], hierarchy: Hierarchy) -> bool:
    """The matching rule of docs/architecture.md, written independently of syndicator.taxonomy.terms."""
    thematiques, territoires, types = interests
    if thematiques and not {term_key(t) for t in thematiques} & {term_key(t.name) for t in item.thematiques}:
        return False
    if types and (item.type is None or term_key(item.type.name) not in {term_key(t) for t in types}):
        return False
    if territoires:
        wanted = set()
        for label in territoires:
            place = hierarchy.resolve(label).place
            assert place is not None, label
            wanted |= (
                {place.code} | set(hierarchy.ancestors(place.code)) | set(hierarchy.descendants(place.code))
            )
        codes = {p.code for t in item.territoires if (p := hierarchy.resolve(t.name).place) is not None}
        if not wanted & codes:
            return False
    return True


def test_each_subscriber_of_the_matrix_gets_exactly_the_matching_items(tmp_path: Path) -> None:
    """Thématiques × territoires at every level × types × frequencies: digests hold the rule's items."""
    combos = list(itertools.product(THEMATIQUES, TERRITOIRES, TYPES))
    subscribers = "".join(
        subscriber_yaml(f"s{n}@example.org", FREQUENCIES[n % 4], th, te, ty)
        for n, (th, te, ty) in enumerate(combos)
    )
    project = Project(tmp_path, subscribers)
    digests = project.digests()
    hierarchy, _ = Hierarchy.load({})
    items = [parse_file(p).item for p in sorted(ITEMS.glob("*.txt"))]
    nonempty = 0
    for n, (th, te, ty) in enumerate(combos):
        subscriber = digests.subscriber(f"s{n}@example.org")
        assert subscriber is not None
        digest = digests.next_digest(subscriber)
        expected = {i.url for i in items if oracle(i, (th, te, ty), hierarchy)}
        got = {i.url for i in digest.items} if digest else set()
        assert got == expected, (th, te, ty)
        nonempty += bool(expected)
    assert nonempty > len(combos) // 3, "the matrix exercises digests that are not empty"


def test_a_subscriber_to_nord_gets_roubaix_news_and_regional_news(tmp_path: Path) -> None:
    """Descendants and ancestors of a followed territoire match; a sibling does not."""
    project = Project(tmp_path, subscriber_yaml("nord@example.org", "weekly", [], ["Nord"], []))
    digests = project.digests()
    subscriber = digests.subscriber("nord@example.org")
    assert subscriber is not None
    digest = digests.next_digest(subscriber)
    assert digest is not None
    territoires = [{t.name for t in i.territoires} for i in digest.items]
    assert any("Roubaix" in t for t in territoires)
    assert any(t == {"Région Hauts de France"} for t in territoires)
    assert not any(t <= {"Amiens", "CA Amiens Métropole"} for t in territoires)


def test_send_delivers_once_and_a_second_send_sends_nothing(tmp_path: Path) -> None:
    """Digests land in the outbox; sending again finds nothing new."""
    subscribers = subscriber_yaml(
        "a@example.org", "weekly", [], [], [], name="Anne Martin"
    ) + subscriber_yaml("b@example.org", "daily", ["Culture"], [], [])
    project = Project(tmp_path, subscribers)
    first = send_digests(project.digests())
    assert (first.sent, first.empty, first.failed, first.suppressed) == (2, 0, 0, 0)
    assert len(project.outbox()) == 2
    second = send_digests(project.digests(NOW + timedelta(hours=1)))
    assert (second.sent, second.empty) == (0, 2)
    assert len(project.outbox()) == 2
    assert Ledger(project.store).counts() == {"sent": 2}


def test_a_new_item_goes_only_to_those_it_matches_once(tmp_path: Path) -> None:
    """After a first round, a new Culture item in Roubaix reaches only matching subscribers, once."""
    subscribers = (
        subscriber_yaml("culture@example.org", "daily", ["Culture"], [], [])
        + subscriber_yaml("nord@example.org", "weekly", [], ["Nord"], [])
        + subscriber_yaml("amiens@example.org", "weekly", [], ["Amiens"], [])
    )
    project = Project(tmp_path, subscribers)
    send_digests(project.digests())
    fields = (
        "Type d'actualites: [Publication](#) [3]\n\n"
        "Thématiques: [Culture](#) [1]\n\nTerritoires : [Roubaix](#) [1]\n\n"
    )
    (project.root / "items" / "zz.txt").write_text(
        item_text("https://www.irev.fr/actualites-0/un-titre-de-test", fields=fields).replace(
            "30 novembre 2021", "25 novembre 2026"
        ),
        encoding="utf-8",
    )
    later = NOW + timedelta(days=1)
    project.ingest(later.astimezone(UTC) - timedelta(minutes=5))
    before = len(project.outbox())
    report = send_digests(project.digests(later))
    assert (report.sent, report.empty) == (2, 1)
    new = project.outbox()[before:]
    assert sorted(str(m["To"]) for m in new) == ["culture@example.org", "nord@example.org"]
    for message in new:
        assert "Un titre de test" in message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    again = send_digests(project.digests(later + timedelta(hours=2)))
    assert again.sent == 0


def test_headers_and_encoding_on_the_produced_bytes(tmp_path: Path) -> None:
    """A French subject round-trips; list headers are there; no line over 998 characters."""
    project = Project(
        tmp_path, subscriber_yaml("a@example.org", "weekly", ["Culture"], [], [], name="Anne Martin")
    )
    send_digests(project.digests())
    [path] = sorted((project.root / "outbox").glob("*.eml"))
    data = path.read_bytes()
    assert all(len(line) <= 998 for line in data.split(b"\r\n"))
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert message["Subject"] == "IREV — 2 actualités du 26 novembre 2026"
    assert str(message["To"]) == "Anne Martin <a@example.org>"
    assert str(message["From"]) == "IREV <lettre@example.org>"
    assert message["Message-ID"].startswith("<digest.") and message["Message-ID"].endswith("@example.org>")
    assert message["List-Unsubscribe"].startswith("<https://lettre.example.org/unsubscribe/")
    assert "mailto:lettre@example.org" in message["List-Unsubscribe"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Auto-Submitted"] == "auto-generated" and message["Precedence"] == "bulk"
    assert message["List-Id"] == "IREV <digest.example.org>"
    assert message["Date"] == "Thu, 26 Nov 2026 08:00:00 +0100"
    assert message.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in message.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "résidence d'artistes" in text and "Bonjour Anne Martin" in text


def test_an_item_title_cannot_add_a_header(tmp_path: Path) -> None:
    """Even a subject template that shows a title with CR LF in it yields one Subject line."""
    project = Project(tmp_path, subscriber_yaml("a@example.org", "weekly", ["Culture"], [], []))
    (project.root / "templates").mkdir()
    (project.root / "templates" / "digest_subject.txt").write_text(
        "{{ digest.items[0].title }}", encoding="utf-8"
    )
    digests = project.digests()
    subscriber = digests.subscriber("a@example.org")
    assert subscriber is not None
    digest = digests.next_digest(subscriber)
    assert digest is not None
    evil = dataclasses.replace(digest.items[0], title="Titre\r\nBcc: x@example.com\r\n\r\nX")
    digest = dataclasses.replace(digest, items=(evil, *digest.items[1:]))
    _, data = digests.message(digest, digests.render(digest))
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert "Bcc" not in message
    assert message["Subject"] == "Titre Bcc: x@example.com X"
    assert b"\r\nBcc:" not in data


def recorded(project: Project, email: str) -> tuple[DigestRun, Digest, LedgerRow]:
    """The subscriber's next digest, recorded in the ledger as pending, with its run."""
    digests = project.digests()
    subscriber = digests.subscriber(email)
    assert subscriber is not None
    digest = digests.next_digest(subscriber)
    assert digest is not None
    (row,) = digests.record([digests.built(digest)]).rows
    return digests, digest, row


def test_a_digest_left_sending_by_a_dead_worker_is_delivered_again_with_its_message_id(
    tmp_path: Path,
) -> None:
    """A crash between taking a digest and confirming it: its claim token holds no live lease,
    so the next send takes it and sends the same Message-ID, once more."""
    project = Project(tmp_path, subscriber_yaml("a@example.org", "weekly", [], [], []))
    _, _, row = recorded(project, "a@example.org")
    with project.store.engine.begin() as connection:
        from syndicator.db.schema import digests as table

        connection.execute(table.update().values(state="sending", claimed_by="0" * 32, claimed_at=NOW))
    report = send_digests(project.digests(NOW + timedelta(minutes=1)))
    assert report.sent == 1
    [message] = project.outbox()
    assert message["Message-ID"] == row.message_id
    assert Ledger(project.store).counts() == {"sent": 1}


def test_items_sent_are_read_back_only_as_far_as_they_can_still_be_chosen(tmp_path: Path) -> None:
    """`sent_by_subscriber(since)` leaves out items published before that day: the ledger keeps
    every item ever sent, and a run needs only those its look-back can still reach."""
    project = Project(tmp_path, subscriber_yaml("a@example.org", "weekly", [], [], []))
    _, digest, _ = recorded(project, "a@example.org")
    ledger = Ledger(project.store)
    everything = ledger.sent_by_subscriber()
    assert len(everything["a@example.org"]) == len(digest.items) > 1
    days = sorted(item.published or NOW.date() for item in digest.items)
    middle = days[len(days) // 2]
    kept = ledger.sent_by_subscriber(middle)["a@example.org"]
    ids = project.digests().ids
    assert kept == {ids[i.url] for i in digest.items if (i.published or NOW.date()) >= middle}
    assert 0 < len(kept) < len(everything["a@example.org"])
    assert ledger.sent_by_subscriber(max(days) + timedelta(days=1)) == {}


def test_a_recorded_digest_is_the_row_the_ledger_gives_back(tmp_path: Path) -> None:
    """What `record` returns (made without reading the row back) is the stored row, dates included."""
    project = Project(tmp_path, subscriber_yaml("a@example.org", "weekly", [], [], []))
    digests, digest, row = recorded(project, "a@example.org")
    stored = Ledger(project.store).last("a@example.org")
    assert row == stored
    assert stored is not None and (str(row.issued), str(row.since)) == (str(stored.issued), str(stored.since))
    assert Ledger(project.store).sent_items("a@example.org") == {digests.ids[i.url] for i in digest.items}


def test_a_suppressed_address_receives_nothing(tmp_path: Path) -> None:
    """An address on the suppression list is counted as suppressed and gets no email."""
    project = Project(tmp_path, subscriber_yaml("a@example.org", "weekly", [], [], []))
    Ledger(project.store).suppress("a@example.org", "unsubscribed", NOW)
    report = send_digests(project.digests())
    assert (report.sent, report.suppressed) == (0, 1)
    assert project.outbox() == []


def test_dry_run_records_and_delivers_nothing(tmp_path: Path) -> None:
    """--dry-run counts what would go, and leaves the ledger and outbox empty."""
    project = Project(tmp_path, subscriber_yaml("a@example.org", "weekly", [], [], []))
    report = send_digests(project.digests(), dry_run=True)
    assert report.sent == 1
    assert project.outbox() == [] and Ledger(project.store).counts() == {}


def test_the_look_back_keeps_an_imported_archive_from_being_mailed(tmp_path: Path) -> None:
    """With the default look-backs, only items published in the last days go out."""
    project = Project(tmp_path, subscriber_yaml("a@example.org", "daily", [], [], []), lookback="{}")
    digests = project.digests()
    subscriber = digests.subscriber("a@example.org")
    assert subscriber is not None
    digest = digests.next_digest(subscriber)
    assert digest is not None
    assert {i.published for i in digest.items} == {datetime(2026, 11, 26).date()}


def test_max_items_shows_the_newest_and_counts_the_rest(tmp_path: Path) -> None:
    """Beyond email.max_items the digest says how many more there are."""
    project = Project(tmp_path, subscriber_yaml("a@example.org", "weekly", [], [], []))
    project.config = project.config.model_copy(
        update={"email": project.config.email.model_copy(update={"max_items": 5})}
    )
    digests = project.digests()
    subscriber = digests.subscriber("a@example.org")
    assert subscriber is not None
    digest = digests.next_digest(subscriber)
    assert digest is not None
    assert sum(len(s.items) for s in digest.sections) == 5
    assert digest.more == len(digest.items) - 5 > 0
    assert f"et {digest.more} autres actualités" in digests.render(digest).text


def test_explain_says_which_rule_lets_an_item_through_or_stops_it(tmp_path: Path) -> None:
    """explain names the list, the term, the ancestor relation, and an earlier digest."""
    project = Project(tmp_path, subscriber_yaml("a@example.org", "weekly", [], ["Roubaix"], ["Événement"]))
    digests = project.digests()
    subscriber = digests.subscriber("a@example.org")
    assert subscriber is not None
    regional = (
        "https://www.irev.fr/actualites-0/rencontre-regionale-des-conseils-citoyens-des-hauts-de-france"
    )
    ok, lines = explain(digests, subscriber, regional)
    assert ok
    assert any("'Région Hauts de France' is above 'Roubaix'" in line for line in lines)
    seed = (
        "https://www.irev.fr/actualites-0/lassemblee-generale-du-gip-irev-adopte-le-programme-dactions-2022"
    )
    ok, lines = explain(digests, subscriber, seed)
    assert not ok
    assert any(line.startswith("stops:  types") and "'Actu de l'IREV'" in line for line in lines)
    send_digests(digests)
    ok, lines = explain(project.digests(NOW + timedelta(hours=1)), subscriber, regional)
    assert not ok and any("already in digest <digest." in line for line in lines)


def test_list_unsubscribe_stays_readable_and_dkim_signs_what_is_stored(tmp_path: Path) -> None:
    """List-Unsubscribe is never an encoded-word; with email.dkim the ledger keeps signed bytes."""
    import dkim as dkimpy

    key = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"], check=True, capture_output=True
    ).stdout
    project = Project(tmp_path, subscriber_yaml("a@example.org", "weekly", ["Culture"], [], []))
    project.config = project.config.model_copy(
        update={
            "email": project.config.email.model_copy(
                update={"dkim": DkimConfig(key=key, selector="lettre", domain="example.org")}
            )
        }
    )
    send_digests(project.digests())
    [path] = sorted((project.root / "outbox").glob("*.eml"))
    data = path.read_bytes()
    header = next(
        line for line in data.split(b"\r\n\r\n")[0].split(b"\r\n") if line.startswith(b"List-Unsubscribe:")
    )
    assert b"=?" not in header and b"<https://lettre.example.org/unsubscribe/" in header
    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)
    assert dkimpy.verify(data, dnsfunc=lambda name, timeout=5: record)

"""Subscriber addresses: one validation everywhere, international addresses on the wire, and a
subscriber whose digest cannot be built or sent failing alone while the others go out.

Real parts only: aiosmtpd on a loopback port (with and without SMTPUTF8), the outbox folder,
SQLite files, the CLI, the web app."""

from __future__ import annotations

import email
import email.policy
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest

from syndicator.config.model import load_config, parse_config
from syndicator.db.ledger import Ledger
from syndicator.db.signups import check_address
from syndicator.db.store import Store
from syndicator.digests import send as delivery
from syndicator.digests.run import DigestRun
from syndicator.digests.send import send_digests
from syndicator.errors import ConfigError
from syndicator.ingest.reading import ingest
from syndicator.mail.messages import Envelope, RenderedEmail, build_message, digest_bytes, to_bytes

from .conftest import Run
from .databases import use_database
from .smtp_server import Handler, smtp_server
from .support import ITEMS
from .test_signup import Site
from .web_support import SECRET, built_project, served, text_of

# As in tests/test_delivery_smtp.py: a late socket close in aiosmtpd's own thread is the test
# server's, not syndicator's.
pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

ELEONORE = "éléonore@exemple.fr"
EVRY, EVRY_WIRE = "contact@mairie-évry.fr", "contact@xn--mairie-vry-h7a.fr"
# A subject template with a bug that only some subscribers' digests meet.
BROKEN_FOR_SOME = "{% if 'casse' in subscriber.email %}{{ no_such_thing.title }}{% endif %}Lettre IREV\n"


def _project(root: Path, subscribers: list[str], *, port: int | None = None) -> Path:
    """A folder with the sample items, ingested, and a config sending to `subscribers` through
    the test server on `port`, or to the outbox."""
    shutil.copytree(ITEMS, root / "items")
    transport = (
        f"  transport: smtp\n  smtp: {{host: 127.0.0.1, port: {port}, starttls: false, timeout: 10}}\n"
        if port is not None
        else "  transport: outbox\n"
    )
    listed = "".join(f"  - email: {address}\n    frequency: weekly\n" for address in subscribers)
    path = root / "config.yaml"
    use_database(
        path,
        f"email:\n  from: 'IREV <lettre@example.org>'\n{transport}"
        "  max_connections: 1\n  rate_per_second: 1000\n  lookback_days: {weekly: 4000}\n"
        f"subscribers:\n{listed}",
    )
    config = load_config(path)
    with Store.open(config.database_url) as store:
        assert ingest(store, [config.items_path]).errors == []
    return path


def _parsed(data: bytes) -> EmailMessage:
    """A message as a mail program reads it (headers in UTF-8 where SMTPUTF8 carried them)."""
    message = email.message_from_string(data.decode("utf-8"), policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def _to_line(data: bytes) -> bytes:
    [line] = [line for line in data.split(b"\r\n") if line.startswith(b"To:")]
    return line


# --- one subscriber's failure is theirs alone ------------------------------------------------


def test_a_non_ascii_local_part_fails_alone_where_the_relay_lacks_smtputf8(tmp_path: Path, run: Run) -> None:
    """The relay does not offer SMTPUTF8: that one digest fails with the reason, `status` names
    the address and the reason, and the other subscribers' digests are delivered."""
    handler = Handler()
    with smtp_server(handler, smtputf8=False) as port:
        config = _project(tmp_path, ["a@example.org", ELEONORE, "b@example.org"], port=port)
        sent = run("digest", "send", "--config", str(config))
    assert sent.code == 1
    assert "sent 2, empty 0, failed 1 (0 temporary, 1 permanent)" in sent.out
    assert f"{ELEONORE}: " in sent.err and "SMTPUTF8" in sent.err
    assert sorted(r.recipients[0] for r in handler.accepted) == ["a@example.org", "b@example.org"]
    status = run("status", "--config", str(config))
    assert "deliveries: 0 pending, 1 failed, 2 sent" in status.out
    [failed] = [line for line in status.out.splitlines() if line.startswith("failed: ")]
    assert failed.startswith(f"failed: {ELEONORE} (") and "SMTPUTF8" in failed


def test_a_non_ascii_local_part_goes_with_smtputf8_when_the_relay_offers_it(tmp_path: Path) -> None:
    """The relay offers SMTPUTF8: the digest goes, its envelope and its `To:` header carry the
    address as written, in UTF-8."""
    handler = Handler()
    with smtp_server(handler) as port:  # aiosmtpd offers SMTPUTF8
        config = load_config(_project(tmp_path, ["a@example.org", ELEONORE], port=port))
        with Store.open(config.database_url) as store:
            report = send_digests(DigestRun(store, config, now=datetime.now(UTC)))
    assert (report.sent, report.failed) == (2, 0)
    [received] = [r for r in handler.accepted if r.recipients[0] != "a@example.org"]
    assert received.recipients == (ELEONORE,)
    assert _to_line(received.data) == f"To: {ELEONORE}".encode()  # raw UTF-8 (RFC 6532)
    # (the stdlib's parser reads it, though it notes a defect RFC 6532 made obsolete)
    assert [a.addr_spec for a in _parsed(received.data)["To"].addresses] == [ELEONORE]


def test_an_internationalised_domain_goes_as_idna_in_the_envelope_and_the_to_header(tmp_path: Path) -> None:
    """`contact@mairie-évry.fr` goes to `contact@xn--mairie-vry-h7a.fr` (no SMTPUTF8 needed),
    and the `To:` header holds that address, not an encoded word that no program reads."""
    handler = Handler()
    with smtp_server(handler, smtputf8=False) as port:
        config = load_config(_project(tmp_path, [EVRY], port=port))
        with Store.open(config.database_url) as store:
            report = send_digests(DigestRun(store, config, now=datetime.now(UTC)))
    assert (report.sent, report.failed) == (1, 0)
    [received] = handler.accepted
    assert received.recipients == (EVRY_WIRE,)
    assert _to_line(received.data) == f"To: {EVRY_WIRE}".encode()
    to = _parsed(received.data)["To"]
    assert [a.addr_spec for a in to.addresses] == [EVRY_WIRE] and to.defects == ()


def test_a_digest_that_cannot_be_built_fails_alone_and_its_items_wait(tmp_path: Path) -> None:
    """A template error for one subscriber's digest: that subscriber fails, recorded with the
    reason; the others are delivered. Once the template is fixed, the next run sends that
    subscriber the items it missed."""
    config = load_config(_project(tmp_path, ["a@example.org", "casse@example.org", "b@example.org"]))
    (tmp_path / "templates").mkdir()
    subject = tmp_path / "templates" / "digest_subject.txt"
    subject.write_text(BROKEN_FOR_SOME, encoding="utf-8")
    now = datetime.now(UTC)
    with Store.open(config.database_url) as store:
        report = send_digests(DigestRun(store, config, now=now))
        assert (report.sent, report.failed) == (2, 1)
        [error] = report.errors
        assert error.startswith("casse@example.org: digest not built: UndefinedError")
        assert "no_such_thing" in error
        [failure] = Ledger(store).failures()
        assert failure.subscriber == "casse@example.org" and "no_such_thing" in (failure.error or "")
        assert len(list((tmp_path / "outbox").glob("*.eml"))) == 2

        subject.unlink()  # fixed: the shipped template again
        again = send_digests(DigestRun(store, config, now=now + timedelta(minutes=5)))
        assert (again.sent, again.empty, again.failed) == (1, 2, 0)
        assert Ledger(store).failures() == []
    [late] = sorted((tmp_path / "outbox").glob("*.eml"))[2:]
    message = email.message_from_bytes(late.read_bytes(), policy=email.policy.default)
    assert str(message["To"]) == "casse@example.org"


def test_a_digest_of_a_later_batch_that_cannot_be_built_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Batches of 5 (5, 5, 2): a subscriber of the second batch whose digest cannot be built
    fails alone; every other digest, before and after it, goes."""
    monkeypatch.setattr(delivery, "BATCH", 5)
    subscribers = [f"s{n}@example.org" for n in range(12)]
    subscribers[7] = "casse@example.org"
    handler = Handler()
    with smtp_server(handler) as port:
        config = load_config(_project(tmp_path, subscribers, port=port))
        (tmp_path / "templates").mkdir()
        (tmp_path / "templates" / "digest_subject.txt").write_text(BROKEN_FOR_SOME, encoding="utf-8")
        with Store.open(config.database_url) as store:
            report = send_digests(DigestRun(store, config, now=datetime.now(UTC)))
            assert (report.sent, report.failed) == (11, 1)
            assert [f.subscriber for f in Ledger(store).failures()] == ["casse@example.org"]
    delivered = sorted(r.recipients[0] for r in handler.accepted)
    assert delivered == sorted(set(subscribers) - {"casse@example.org"})


# --- the bytes -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("recipient", "to_line"),
    [(EVRY, f"To: Anne <{EVRY_WIRE}>".encode()), (ELEONORE, f"To: Anne <{ELEONORE}>".encode())],
)
def test_the_quick_writer_gives_the_stdlib_bytes_for_international_addresses(
    recipient: str, to_line: bytes
) -> None:
    """`digest_bytes` stays byte-equal to the stdlib's message for an IDNA domain and for a
    local part that is not ASCII, and the `To:` line holds a readable address."""
    rendered = RenderedEmail(subject="Lettre — 3 actualités", text="Bonjour\n", html="<p>Bonjour</p>\n")
    envelope = Envelope(
        "IREV <lettre@example.org>", recipient, "Anne", "<digest.1.abc@example.org>",
        datetime(2026, 11, 26, 7, 30, tzinfo=UTC), "IREV", "https://lettre.example.org/unsubscribe/x",
    )  # fmt: skip
    data = digest_bytes(rendered, envelope)
    assert data == to_bytes(build_message(rendered, envelope))
    assert _to_line(data) == to_line


# --- one validation ----------------------------------------------------------------------------

ACCEPTED = ["marie.dupont@example.org", "x.y-z+tag@mairie.example.fr", ELEONORE, EVRY]
REFUSED = ["a..b@exemple.fr", "anne@exemple", "anne@exemple.fr.", "anne@-exemple.fr", "@exemple.fr",
           "a b@exemple.fr", "anne@localhost"]  # fmt: skip


@pytest.mark.parametrize("address", ACCEPTED + REFUSED)
def test_config_and_sign_up_accept_and_refuse_the_same_addresses(address: str, tmp_path: Path) -> None:
    """config.yaml and the web sign-up form take exactly the same addresses."""
    try:
        parse_config(f"subscribers:\n  - email: '{address}'\n", tmp_path / "config.yaml")
    except ConfigError as error:
        in_config, problem = False, str(error.problems()[0])
        assert problem.startswith(f"{tmp_path / 'config.yaml'}:2: subscriber #1 ({address}), email: ")
    else:
        in_config = True
    on_the_web = check_address(address)[0] is not None
    assert in_config == on_the_web == (address in ACCEPTED)


def test_check_and_subscribers_add_warn_of_a_non_ascii_local_part(project: Path, run: Run) -> None:
    """`subscribers add` takes the address and warns; `check` then warns at its line."""
    added = run("subscribers", "add", ELEONORE)
    assert added.code == 0 and "warning" in added.err and "SMTPUTF8" in added.err
    line = next(
        number
        for number, text in enumerate((project / "config.yaml").read_text(encoding="utf-8").splitlines(), 1)
        if ELEONORE in text
    )
    checked = run("check")
    assert f"config.yaml:{line}: warning: subscriber {ELEONORE} " in checked.err
    assert "SMTPUTF8" in checked.err


# --- the web -----------------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("SYNDICATOR_SECRET", SECRET)
    (tmp_path / "built").mkdir()
    yield from served(Site, built_project(tmp_path / "built"), tmp_path / "site")


def test_web_pages_show_an_internationalised_domain_as_typed(site: Site) -> None:
    """Signing up as `contact@mairie-évry.fr`: the page names that address as typed, the
    confirmation goes to its IDNA form."""
    answer = site.sign_up(EVRY)
    assert answer.status_code == 200
    assert f"envoyé à {EVRY}" in text_of(answer.text), text_of(answer.text)
    assert "xn--" not in answer.text
    [message] = site.outbox()
    assert [a.addr_spec for a in message["To"].addresses] == [EVRY_WIRE]

"""Delivery through real SMTP servers and real processes: bad mailboxes, policy stops, kill -9,
two runs at once. The server is aiosmtpd on a loopback port (tests/smtp_server.py)."""

from __future__ import annotations

import os
import shutil
import signal
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from jinja2 import UndefinedError

from syndicator.config.model import load_config
from syndicator.db.ledger import Ledger
from syndicator.db.runs import Runs
from syndicator.db.store import Store
from syndicator.digests import send as delivery
from syndicator.digests.run import DigestRun
from syndicator.digests.send import send_digests
from syndicator.ingest.reading import ingest
from syndicator.mail.transports import RunStopped

from .databases import use_database
from .smtp_server import Handler, SlowHandler, digest_send, message_ids, smtp_server
from .support import ITEMS

# The SMTP server runs in aiosmtpd's own thread and event loop: when a test ends, a socket or TLS
# transport it had may still be closing there, and Python reports that late close as an
# "unraisable" ResourceWarning (seen about once in ten full runs under load). It is the test
# server's, not syndicator's, so it does not fail these tests.
pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


SUBSCRIBERS = 12


def project(root: Path, port: int, *, connections: int = 2, subscribers: int = SUBSCRIBERS) -> Path:
    """A folder with the samples and a config sending through the test server."""
    shutil.copytree(ITEMS, root / "items")
    listed = "".join(f"  - email: s{n}@example.org\n    frequency: weekly\n" for n in range(subscribers))
    use_database(
        root / "config.yaml",
        "email:\n"
        "  from: 'IREV <lettre@example.org>'\n"
        "  transport: smtp\n"
        f"  smtp: {{host: 127.0.0.1, port: {port}, starttls: false, timeout: 10}}\n"
        f"  max_connections: {connections}\n"
        "  rate_per_second: 1000\n"
        "  lease_seconds: 2\n"
        "  lookback_days: {weekly: 4000}\n"
        f"subscribers:\n{listed}",
    )
    config = load_config(root / "config.yaml")
    with Store.open(config.database_url) as store:
        assert ingest(store, [config.items_path]).errors == []
    return root / "config.yaml"


def test_a_bad_mailbox_is_suppressed_and_the_others_delivered(tmp_path: Path) -> None:
    """550 5.1.1 for one address: that digest fails, the address is suppressed, the rest go."""
    handler = Handler(rcpt_replies={"s3@example.org": "550 5.1.1 No such user"})
    with smtp_server(handler) as port:
        config = load_config(project(tmp_path, port))
        with Store.open(config.database_url) as store:
            report = send_digests(DigestRun(store, config, now=_now()))
            assert (report.sent, report.failed) == (SUBSCRIBERS - 1, 1)
            assert set(Ledger(store).suppressed()) == {"s3@example.org"}
    assert len(handler.accepted) == SUBSCRIBERS - 1


def test_a_policy_refusal_stops_the_run_and_suppresses_no_one(tmp_path: Path) -> None:
    """550 5.7.1: the run stops with an error; nobody is suppressed; the digests recorded stay
    pending, and every subscriber of the run is due again for the next worker."""
    handler = Handler(data_replies=["550 5.7.1 Relaying denied"] * 50)
    with smtp_server(handler) as port:
        config = load_config(project(tmp_path, port, connections=1))
        with Store.open(config.database_url) as store:
            with pytest.raises(RunStopped, match=r"5\.7\.1"):
                send_digests(DigestRun(store, config, now=_now()))
            ledger = Ledger(store)
            assert ledger.suppressed() == {}
            assert set(ledger.counts()) == {"pending"}
            [(_, tally)] = Runs(store).open_runs()
            assert tally == {"due": SUBSCRIBERS}
    assert handler.accepted == []


@pytest.mark.parametrize(("subscribers", "kill_after"), [(SUBSCRIBERS, 3), (60, 30)])
def test_killed_mid_run_the_next_run_delivers_the_rest_once(
    tmp_path: Path, subscribers: int, kill_after: int
) -> None:
    """SIGKILL during delivery: the restart sends every digest not confirmed, same Message-IDs;
    only a message that was on the wire at the kill may arrive twice. With 60 subscribers the
    run has two batches (25, then 35): killed in the second."""
    handler = SlowHandler(0.3 if subscribers == SUBSCRIBERS else 0.1)
    with smtp_server(handler) as port:
        config_file = project(tmp_path, port, connections=2, subscribers=subscribers)
        first = digest_send(config_file)
        deadline = time.monotonic() + 60
        while len(handler.received) < kill_after and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(first.pid, signal.SIGKILL)
        first.communicate(timeout=30)
        before = len(handler.accepted)
        assert kill_after <= before < subscribers, "killed mid-run"
        handler.delay = 0.0
        second = digest_send(config_file)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 0, err
    ids = message_ids(handler)
    recipients = {recipient for recipient, _ in ids}
    assert recipients == {f"s{n}@example.org" for n in range(subscribers)}, "none lost"
    per_recipient = Counter(recipient for recipient, _ in ids)
    assert set(per_recipient.values()) == {1}, "one digest, one Message-ID, per subscriber"
    duplicates = sum(count - 1 for count in ids.values())
    assert duplicates <= 2, "duplicates only among the messages on the wire (2 connections)"


def test_two_runs_at_once_deliver_each_digest_once(tmp_path: Path) -> None:
    """Two `digest send` processes on one store: every digest arrives exactly once."""
    handler = SlowHandler(0.05)
    with smtp_server(handler) as port:
        config_file = project(tmp_path, port, connections=2)
        runs = [digest_send(config_file), digest_send(config_file)]
        for run in runs:
            _, err = run.communicate(timeout=120)
            assert run.returncode == 0, err
    ids = message_ids(handler)
    assert len(ids) == SUBSCRIBERS
    assert set(ids.values()) == {1}


def test_several_batches_are_each_delivered_once_over_the_first_one_s_connections(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several batches, claimed, built and sent one after the other: every subscriber gets one
    digest, the ledger has them all sent, and the connections opened for the first batch serve
    the others."""
    monkeypatch.setattr(delivery, "BATCH", 5)  # 12 subscribers: 3 batches
    handler = Handler()
    seen: list[tuple[int, int]] = []
    with smtp_server(handler) as port:
        config = load_config(project(tmp_path, port))
        with Store.open(config.database_url) as store:
            digests = DigestRun(store, config, now=_now())
            report = send_digests(digests, progress=lambda done, total: seen.append((done, total)))
            assert (report.sent, report.failed, report.empty) == (SUBSCRIBERS, 0, 0)
            assert Ledger(store).counts() == {"sent": SUBSCRIBERS}
            assert set(digests.lasts) == {f"s{n}@example.org" for n in range(SUBSCRIBERS)}
            assert all(row.message is None for row in digests.lasts.values())  # bytes not kept
    assert Counter(r.recipients[0] for r in handler.accepted) == {
        f"s{n}@example.org": 1 for n in range(SUBSCRIBERS)
    }
    assert seen[-1] == (SUBSCRIBERS, SUBSCRIBERS)
    assert len(handler.peers) <= 2  # max_connections, for the 3 batches


def test_a_run_stopped_in_a_batch_gives_its_subscribers_back_and_leaves_its_digests_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A policy refusal stops the run in its first batch: every digest recorded is left pending
    for the next run, and no subscriber stays claimed."""
    monkeypatch.setattr(delivery, "BATCH", 5)
    handler = SlowHandler(0.2, data_replies=["550 5.7.1 Relaying denied"] * 50)
    with smtp_server(handler) as port:
        config = load_config(project(tmp_path, port, connections=1))
        with Store.open(config.database_url) as store:
            with pytest.raises(RunStopped, match=r"5\.7\.1"):
                send_digests(DigestRun(store, config, now=_now()))
            assert set(Ledger(store).counts()) == {"pending"}
            (_, tally), *_ = Runs(store).open_runs()  # the run stays open for the next send
            assert "claimed" not in tally, "the batch stopped is given back"
    assert handler.accepted == []


def test_a_template_no_digest_renders_with_fails_each_digest_with_its_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A template no digest can be rendered with: each subscriber's digest fails with its error,
    recorded without its items (they wait for the template's fix); nothing is sent."""
    monkeypatch.setattr(delivery, "BATCH", 5)
    handler = Handler()
    with smtp_server(handler) as port:
        config = load_config(project(tmp_path, port))
        (tmp_path / "templates").mkdir()
        (tmp_path / "templates" / "digest_subject.txt").write_text(
            "{{ no_such_thing.title }}", encoding="utf-8"
        )
        with Store.open(config.database_url) as store:
            report = send_digests(DigestRun(store, config, now=_now()))
            assert (report.sent, report.failed) == (0, SUBSCRIBERS)
            assert all(f"{UndefinedError.__name__}: 'no_such_thing' is undefined" in e for e in report.errors)
            assert Ledger(store).counts() == {"unbuilt": SUBSCRIBERS}
            assert Ledger(store).lasts() == {}  # the next digest's window is unchanged
    assert handler.accepted == []


def _now() -> datetime:
    return datetime.now(UTC)

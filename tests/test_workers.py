"""Several identical send workers sharing one run through the database: claims of due
subscribers, leases on the database's clock, fencing of a worker whose lease ran out, a killed
worker's share taken by the others, `--workers N`, and one rate for the whole deployment.

Real parts only: real `syndicator digest send` processes (killed with SIGKILL where it matters),
a real aiosmtpd sink on a loopback port, the real store: a SQLite file, or in the PostgreSQL run
a database of the test's own on the suite's server (tests/databases.py)."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError, OperationalError

from syndicator.config.model import load_config
from syndicator.db.ledger import Ledger
from syndicator.db.runs import Runs, retrying, retrying_here
from syndicator.db.schema import MIGRATIONS, schema_version
from syndicator.db.store import Store
from syndicator.digests.run import DigestRun
from syndicator.ingest.reading import ingest

from . import databases
from .smtp_server import Handler, SlowHandler, digest_send, message_ids, smtp_server
from .support import ITEMS

pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]

LEASE = 10  # seconds: short, so that a killed worker's share is taken over quickly; not so short
# that a heartbeat delayed by a loaded CI machine lets a live worker's lease run out (at 5 s, one
# run in about six of the PostgreSQL suite saw two live workers both report some subscribers)


class StampingHandler(Handler):
    """Accepts every message, noting when each DATA arrived."""

    def __init__(self) -> None:
        super().__init__()
        self.stamps: list[float] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.stamps.append(time.monotonic())
        return await super().handle_DATA(server, session, envelope)


def project(
    root: Path, port: int, *, subscribers: int, rate: float = 1000, connections: int = 2, daily: int = 0
) -> Path:
    """A folder with the samples and a config sending through the test server."""
    shutil.copytree(ITEMS, root / "items")
    listed = "".join(
        f"  - email: s{n:03d}@example.org\n    frequency: {'daily' if n < daily else 'weekly'}\n"
        for n in range(subscribers)
    )  # the first `daily` ones daily
    (root / "config.yaml").write_text(
        f"database: {databases.database_for(root)}\n" + "email:\n"
        "  from: 'IREV <lettre@example.org>'\n"
        "  transport: smtp\n"
        f"  smtp: {{host: 127.0.0.1, port: {port}, starttls: false, timeout: 10}}\n"
        f"  max_connections: {connections}\n"
        f"  rate_per_second: {rate}\n"
        f"  lease_seconds: {LEASE}\n"
        "  lookback_days: {daily: 4000, weekly: 4000}\n"
        f"subscribers:\n{listed}",
        encoding="utf-8",
    )
    config = load_config(root / "config.yaml")
    with Store.open(config.database_url) as store:
        assert ingest(store, [config.items_path]).errors == []
    return root / "config.yaml"


def summaries(out: str) -> list[dict[str, int]]:
    """Each worker's summary line of a `digest send` output, as counts."""
    return [
        {key: int(value) for value, key in zip(m.groups()[::2], m.groups()[1::2], strict=True)}
        for m in re.finditer(
            r"(\d+) \((sent)\), (\d+) \((empty)\)", re.sub(r"(sent|empty) (\d+)", r"\2 (\1)", out)
        )
    ]


def test_two_workers_started_together_share_the_run_and_report_only_their_own(tmp_path: Path) -> None:
    """Two `digest send` processes started at once: every subscriber gets one digest, and their
    reports add up to the run (neither counts the other's subscribers as `empty`)."""
    subscribers = 24
    handler = SlowHandler(0.05)
    with smtp_server(handler) as port:
        config_file = project(tmp_path, port, subscribers=subscribers)
        workers = [digest_send(config_file), digest_send(config_file)]
        outputs = []
        for worker in workers:
            out, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, err
            outputs.append(out)
    counts = [summary for out in outputs for summary in summaries(out)]
    assert len(counts) == 2, outputs
    assert sum(c["sent"] for c in counts) == subscribers
    assert sum(c["empty"] for c in counts) == 0, outputs
    assert Counter(r for r, _ in message_ids(handler)) == {
        f"s{n:03d}@example.org": 1 for n in range(subscribers)
    }


def test_a_worker_joining_while_another_opens_the_run_joins_that_run(tmp_path: Path) -> None:
    """The second worker asks for the open run while the first has opened one but not yet
    committed it: it waits for the first, then joins its run. (On PostgreSQL it used to find no
    run, then, the first's committed meanwhile, number a second run after it: both runs listed
    every subscriber, and each worker found the other's digests already made, as `empty`.)"""
    url = databases.database_for(tmp_path)
    subscribers = [f"s{n:03d}@example.org" for n in range(3)]
    opened, asked, committed = threading.Event(), threading.Event(), threading.Event()
    joined: dict[str, int] = {}

    def hold_the_commit(_c: object, _cursor: object, statement: str, *_: object) -> None:
        if statement.startswith("INSERT INTO send_workers"):  # the last statement before commit
            opened.set()
            asked.wait(timeout=2)  # until the other worker has asked, or gave up waiting for it

    def note_the_question(_c: object, _cursor: object, statement: str, *_: object) -> None:
        if "send_runs.finished IS NULL" in statement:
            asked.set()
            committed.wait(timeout=2)  # what it does next, it does after the first's commit

    def join(name: str, hook: Callable[..., None], when: str) -> None:
        with Store.open(url) as store:
            event.listen(store.engine, when, hook)
            run, _ = Runs(store).join("weekly", subscribers, datetime.now(UTC))
            joined[name] = run.id
        if name == "first":
            committed.set()

    first = threading.Thread(target=join, args=("first", hold_the_commit, "before_cursor_execute"))
    first.start()
    assert opened.wait(timeout=30)
    join("second", note_the_question, "after_cursor_execute")
    first.join(timeout=30)
    assert joined["first"] == joined["second"], "one run for both"


def test_a_killed_worker_s_subscribers_are_taken_by_the_other_within_one_lease(tmp_path: Path) -> None:
    """kill -9 one of two workers mid-send: the other finishes the run on its own (within about
    one lease), nothing is lost, and a digest arrives twice only if it was on the wire at the
    kill, with the same Message-ID."""
    subscribers = 60
    handler = SlowHandler(0.1)
    with smtp_server(handler) as port:
        config_file = project(tmp_path, port, subscribers=subscribers)
        victim, survivor = digest_send(config_file), digest_send(config_file)
        deadline = time.monotonic() + 60
        while len(handler.received) < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        os.kill(victim.pid, signal.SIGKILL)
        victim.communicate(timeout=30)
        _, err = survivor.communicate(timeout=120)
        assert survivor.returncode == 0, err
    ids = message_ids(handler)
    assert {r for r, _ in ids} == {f"s{n:03d}@example.org" for n in range(subscribers)}, "none lost"
    assert set(Counter(r for r, _ in ids).values()) == {1}, "one Message-ID per subscriber"
    assert sum(count - 1 for count in ids.values()) <= 2, "duplicates only among those on the wire"
    config = load_config(config_file)
    with Store.open(config.database_url) as store:
        assert Ledger(store).counts() == {"sent": subscribers}


def test_a_worker_whose_lease_ran_out_is_fenced(tmp_path: Path) -> None:
    """A worker paused past its lease: another worker takes its subscriber, and the late one's
    writes (recording a digest, confirming one as sent) are refused by its claim token."""
    handler = Handler()
    with smtp_server(handler) as port:
        config = load_config(project(tmp_path, port, subscribers=1))
    with Store.open(config.database_url) as store:
        digests = DigestRun(store, config, now=datetime.now(UTC))
        digests.ledger.lease = 1.0
        runs = Runs(store, lease=1.0)
        run, _ = runs.join("weekly", ["s000@example.org"], digests.now)
        late = runs.claim(run, 10)
        assert late is not None and late.subscribers == ("s000@example.org",)
        assert runs.claim(run, 10) is None  # held
        subscriber = digests.subscriber("s000@example.org")
        assert subscriber is not None
        digest = digests.next_digest(subscriber)
        assert digest is not None
        (row,) = digests.record([digests.built(digest)], claim=late.token).rows
        with digests.ledger.writes() as writes:
            assert writes.take(row, late.token)
            time.sleep(1.3)  # the lease runs out on the database's clock
            other = runs.claim(run, 10)
            assert other is not None and other.subscribers == ("s000@example.org",)
            assert writes.take(row, other.token)  # the digest left sending is the new worker's
            assert not writes.sent(row, datetime.now(UTC), late.token)  # fenced
            assert digests.record([digests.built(digest)], claim=late.token).fenced == {"s000@example.org"}
            assert runs.done(late, {"s000@example.org": "sent"}) == 0
            assert Ledger(store).counts() == {"sending": 1}
            assert writes.sent(row, datetime.now(UTC), other.token)


def test_a_batch_is_recorded_together_but_one_refused_digest_does_not_stop_the_others(
    tmp_path: Path,
) -> None:
    """A worker records its batch of digests in one transaction. When the database refuses one
    (a concurrent run recorded some of its items for that subscriber first) the others are still
    recorded, each on its own; and the subscribers its claim no longer holds (given back, here)
    are fenced: nothing is written for them."""
    handler = Handler()
    with smtp_server(handler) as port:
        config = load_config(project(tmp_path, port, subscribers=12))
    with Store.open(config.database_url) as store:
        digests = DigestRun(store, config, now=datetime.now(UTC))
        runs = Runs(store, lease=LEASE)
        run, _ = runs.join(None, [s.key for s in digests.subscribers()], digests.now)
        claim = runs.claim(run, 4)  # the first four
        assert claim is not None and claim.subscribers == tuple(f"s{n:03d}@example.org" for n in range(4))
        built = {}
        for subscriber in digests.subscribers()[:4]:
            digest = digests.next_digest(subscriber)
            assert digest is not None
            built[subscriber.key] = digests.built(digest)
        # Another run got there first for s001: its digest holds the same items.
        other = DigestRun(store, config, now=digests.now)
        assert other.record([built["s001@example.org"]]).rows
        runs.give_back(claim, ["s003@example.org"])  # no longer this worker's
        recorded = digests.record(list(built.values()), claim=claim.token)
        assert sorted(row.subscriber for row in recorded.rows) == ["s000@example.org", "s002@example.org"]
        assert recorded.already == {"s001@example.org"}
        assert recorded.fenced == {"s003@example.org"}
        assert Ledger(store).counts() == {"pending": 3}  # s001's from the other run, none for s003
        for row in recorded.rows:
            assert row.message == built[row.subscriber].message  # the bytes as built
            with digests.ledger.writes() as writes:
                assert writes.take(row, claim.token)


def test_a_digest_held_by_a_dead_run_s_claim_goes_with_the_next_run(tmp_path: Path) -> None:
    """A worker killed right after taking a digest: its heartbeat stopped, so its run is closed
    by the next `digest send`, but its claim was renewed when it recorded the digest, and
    outlives its heartbeat. The next send must not find the digest held by that dead claim: it
    sends it, and the run ends with nothing left pending."""
    handler = Handler()
    with smtp_server(handler) as port:
        config_file = project(tmp_path, port, subscribers=3)
        config = load_config(config_file)
        with Store.open(config.database_url) as store:
            digests = DigestRun(store, config, now=datetime.now(UTC))
            runs = Runs(store, lease=LEASE)
            run, worker = runs.join(None, [s.key for s in digests.subscribers()], digests.now)
            dead = runs.claim(run, 10)
            assert dead is not None
            subscriber = digests.subscriber("s000@example.org")
            assert subscriber is not None
            digest = digests.next_digest(subscriber)
            assert digest is not None
            (row,) = digests.record([digests.built(digest)], claim=dead.token).rows  # renews the claim
            with digests.ledger.writes() as writes:
                assert writes.take(row, dead.token)
            runs.leave(worker)  # the heartbeat is gone with the process; the claim is not
        survivor = digest_send(config_file)
        out, err = survivor.communicate(timeout=120)
        assert survivor.returncode == 0, err
        with Store.open(config.database_url) as store:
            assert Ledger(store).counts() == {"sent": 3}, out
    assert Counter(r for r, _ in message_ids(handler)) == {f"s{n:03d}@example.org": 1 for n in range(3)}


def test_workers_option_runs_n_workers_that_each_print_their_outcomes(tmp_path: Path) -> None:
    """`digest send --workers 3`: three workers share the run, each prints its own summary, and
    every subscriber gets one digest."""
    subscribers = 30
    handler = SlowHandler(0.05)
    with smtp_server(handler) as port:
        config_file = project(tmp_path, port, subscribers=subscribers)
        run = digest_send(config_file, "--workers", "3")
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
    counts = summaries(out)
    assert len(counts) == 3, out
    assert sum(c["sent"] for c in counts) == subscribers
    assert Counter(r for r, _ in message_ids(handler)) == {
        f"s{n:03d}@example.org": 1 for n in range(subscribers)
    }


def test_workers_option_counts_each_subscriber_once_when_nothing_is_due(tmp_path: Path) -> None:
    """`digest send --workers 3` right after a send that left nothing new: the workers share one
    run even when the first finishes it before the others start, so their `empty` counts add up
    to the subscribers once (not once per worker), and nothing is sent again."""
    subscribers = 5
    handler = Handler()
    with smtp_server(handler) as port:
        config_file = project(tmp_path, port, subscribers=subscribers)
        first = digest_send(config_file)
        assert first.communicate(timeout=120)[0].strip().startswith(f"sent {subscribers},")
        again = digest_send(config_file, "--workers", "3")
        out, err = again.communicate(timeout=120)
        assert again.returncode == 0, err
    counts = summaries(out)
    assert len(counts) == 3, out
    assert sum(c["sent"] for c in counts) == 0
    assert sum(c["empty"] for c in counts) == subscribers, out
    assert len(handler.accepted) == subscribers


def test_the_rate_is_one_for_all_the_workers(tmp_path: Path) -> None:
    """`email.rate_per_second: 10` with two workers at once (the daily send and the weekly send,
    say): together they never send more than about 10 messages in any second (not 10 each),
    and all 30 go."""
    subscribers = 30
    handler = StampingHandler()
    with smtp_server(handler) as port:
        config_file = project(tmp_path, port, subscribers=subscribers, rate=10, connections=2, daily=15)
        workers = [
            digest_send(config_file, "--frequency", "daily"),
            digest_send(config_file, "--frequency", "weekly"),
        ]
        for worker in workers:
            _, err = worker.communicate(timeout=120)
            assert worker.returncode == 0, err
    stamps = sorted(handler.stamps)
    assert len(stamps) == subscribers
    busiest = max(sum(1 for t in stamps if start <= t < start + 1.0) for start in stamps)
    assert busiest <= 12, f"{busiest} messages in one second"


def test_a_worker_refuses_a_database_at_another_schema_version(tmp_path: Path) -> None:
    """A database migrated by a newer syndicator: `digest send` refuses to start, exit 1, naming
    the version the database is at and the one it knows, and sends nothing."""
    handler = Handler()
    with smtp_server(handler) as port:
        config_file = project(tmp_path, port, subscribers=2)
        config = load_config(config_file)
        with Store.open(config.database_url) as store, store.engine.begin() as connection:
            connection.execute(schema_version.insert().values(version=len(MIGRATIONS) + 1))
        worker = digest_send(config_file)
        _, err = worker.communicate(timeout=60)
    assert worker.returncode == 1
    assert f"schema version {len(MIGRATIONS) + 1}, newer than this syndicator ({len(MIGRATIONS)})" in err
    assert handler.accepted == []


def test_a_claim_takes_a_batch_not_the_whole_run(tmp_path: Path) -> None:
    """A worker claims at most the batch it asks for, and never a subscriber another live claim
    holds: two claims of 5 over 30 due subscribers take 10 different ones."""
    url = databases.database_for(tmp_path, "store.db")
    with Store.open(url) as store:
        runs = Runs(store)
        run, _ = runs.join("daily", [f"s{n:03d}@example.org" for n in range(30)], datetime.now(UTC))
        first, second = runs.claim(run, 5), runs.claim(run, 5)
        assert first is not None and second is not None
        assert len(first.subscribers) == len(second.subscribers) == 5
        assert not set(first.subscribers) & set(second.subscribers)
        assert runs.waiting(run) == 30


def test_a_worker_has_no_helper_process_to_leave_behind(tmp_path: Path) -> None:
    """A worker sending to many subscribers runs as one process: no builder, forkserver or
    resource tracker that a `kill -9` would leave behind, blocked on a pipe."""
    handler = SlowHandler(0.1)
    with smtp_server(handler) as port:
        config_file = project(tmp_path, port, subscribers=80)
        worker = digest_send(config_file)
        deadline = time.monotonic() + 60
        while len(handler.received) < 10 and time.monotonic() < deadline:
            time.sleep(0.02)
        children = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(worker.pid)],
                                  capture_output=True, text=True, check=False).stdout  # fmt: skip
        os.kill(worker.pid, signal.SIGKILL)
        worker.communicate(timeout=30)
    assert len(handler.received) >= 10, "killed while sending"
    assert children.strip() == "", children


@pytest.mark.skipif(not databases.on_postgresql(), reason="restarts the PostgreSQL server")
def test_a_database_restart_during_a_send_is_waited_for(tmp_path: Path) -> None:
    """PostgreSQL stops (every connection closed) for two seconds in the middle of a send with
    two workers: they wait for it, retrying, and finish the run; every subscriber gets their
    digest, with one Message-ID, and twice at most for the messages that were on the wire."""
    subscribers, connections = 60, 2
    handler = SlowHandler(0.05)
    with smtp_server(handler) as port:
        config_file = project(tmp_path, port, subscribers=subscribers, connections=connections)
        workers = [digest_send(config_file), digest_send(config_file)]
        deadline = time.monotonic() + 60
        while len(handler.received) < 15 and time.monotonic() < deadline:
            time.sleep(0.02)
        databases.restart_server(down=2.0)
        assert len(handler.received) < subscribers, "restarted while sending"
        outputs = [worker.communicate(timeout=180) for worker in workers]
    for worker, (_, err) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, err
    assert any("database unavailable" in err for _, err in outputs), "the wait is logged"
    ids = message_ids(handler)
    assert {r for r, _ in ids} == {f"s{n:03d}@example.org" for n in range(subscribers)}, "none lost"
    assert set(Counter(r for r, _ in ids).values()) == {1}, "one Message-ID per subscriber"
    assert sum(count - 1 for count in ids.values()) <= 2 * connections, "duplicates only on the wire"
    with Store.open(load_config(config_file).database_url) as store:
        assert Ledger(store).counts() == {"sent": subscribers}


@pytest.mark.parametrize("in_the_loop", [False, True], ids=["retrying", "retrying_here"])
def test_a_database_out_of_reach_is_waited_for_and_any_other_error_raised_at_once(in_the_loop: bool) -> None:
    """Both ways of trying again keep one policy: a lost connection is tried again after a
    growing pause, and the action's result returned; an integrity error is raised at once."""
    calls: list[str] = []

    def flaky() -> str:
        calls.append("try")
        if len(calls) < 3:
            raise OperationalError("SELECT 1", {}, ConnectionError("server closed the connection"))
        return "done"

    def refused() -> str:
        calls.append("refused")
        raise IntegrityError("INSERT", {}, ValueError("duplicate key"))

    def attempt(action: Callable[[], str]) -> str:
        if in_the_loop:
            return asyncio.run(retrying_here(action, what="testing", first=0.01))
        return retrying(action, what="testing", first=0.01)

    assert attempt(flaky) == "done"
    assert calls == ["try"] * 3
    calls.clear()
    with pytest.raises(IntegrityError):
        attempt(refused)
    assert calls == ["refused"]

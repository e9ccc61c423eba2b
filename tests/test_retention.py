"""Retention (RGPD article 5(1)(e)): `syndicator purge` and every refresh remove or aggregate
what is past its period, print what went, never touch what a running send needs, and wait for
the runner's lock. Rows are written into the real store of a project, dated from now."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import func, select

from syndicator.config.model import load_config
from syndicator.db.ledger import Ledger
from syndicator.db.schema import (
    bounce_events,
    digest_items,
    digests,
    items,
    ledger_counts,
    send_claims,
    send_runs,
    signup_requests,
    subscriber_choices,
    suppressions,
)
from syndicator.db.store import Store
from syndicator.privacy.retention import months_before
from syndicator.service.runlock import RunnerLock

from .conftest import Run

NOW = datetime.now(UTC)
OLD = months_before(NOW, 14)  # past the 13 months of the ledger
RECENT = NOW - timedelta(days=10)


def _store(project: Path) -> Store:
    return Store.open(load_config(project / "config.yaml").database_url)


def _request(email: str, created: datetime, confirmed: datetime | None = None) -> dict[str, object]:
    return {
        "subscriber": email,
        "email": email,
        "frequency": "weekly",
        "thematiques": "[]",
        "territoires": "[]",
        "types": "[]",
        "ip": "192.0.2.1",
        "consent_wording": "v1",
        "created": created,
        "expires": created + timedelta(hours=48),
        "confirmed": confirmed,
    }


def _digest(
    connection: object, number: int, subscriber: str, issued: datetime, *, state: str, item_ids: list[int]
) -> None:
    connection.execute(  # type: ignore[attr-defined]
        digests.insert().values(
            id=number,
            subscriber=subscriber,
            frequency="weekly",
            issued=issued,
            message_id=f"<d{number}@example.org>",
            state=state,
            attempts=1,
            message=b"bytes" if state == "pending" else None,
            sent_at=issued if state == "sent" else None,
        )
    )
    for item_id in item_ids:
        connection.execute(  # type: ignore[attr-defined]
            digest_items.insert().values(digest_id=number, subscriber=subscriber, item_id=item_id)
        )


def _seed(project: Path, run: Run, *, lookback: str = "monthly: 62") -> None:
    """Old and recent rows of every kind retention looks at; the look-back of monthly digests
    set back to its default (the sample config.yaml's demo looks back ten years)."""
    config = project / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace("monthly: 3650", lookback), encoding="utf-8")
    assert run("ingest").code == 0
    with _store(project) as store, store.engine.begin() as connection:
        ids = list(connection.execute(select(items.c.id).order_by(items.c.id)).scalars())
        connection.execute(
            signup_requests.insert().values(_request("vieux@example.org", NOW - timedelta(days=31)))
        )
        connection.execute(
            signup_requests.insert().values(
                _request("ancien@example.org", NOW - timedelta(days=40), NOW - timedelta(days=39))
            )
        )
        connection.execute(
            signup_requests.insert().values(_request("neuf@example.org", NOW - timedelta(hours=1)))
        )
        for email, since in (
            ("parti@example.org", months_before(NOW, 12 * 3 + 1)),
            ("recent@example.org", RECENT),
        ):
            connection.execute(
                subscriber_choices.insert().values(
                    subscriber=email,
                    email=email,
                    frequency="weekly",
                    updated=since,
                    consent_at=since,
                    consent_ip="192.0.2.1",
                    consent_wording="v1",
                    consent_notice="1",
                )
            )
            connection.execute(
                suppressions.insert().values(
                    subscriber=email,
                    reason="hard bounce",
                    since=since,
                    status="5.1.1",
                    diagnostic=f"smtp; 550 5.1.1 <{email}>: Recipient address rejected",
                )
            )
        _digest(connection, 1, "marie.dupont@example.org", OLD, state="sent", item_ids=ids[:3])
        _digest(connection, 2, "karim.benali@example.org", OLD, state="sent", item_ids=ids[3:5])
        _digest(
            connection, 3, "karim.benali@example.org", OLD, state="pending", item_ids=ids[5:6]
        )  # a send under way
        _digest(connection, 4, "marie.dupont@example.org", RECENT, state="sent", item_ids=ids[6:8])
        connection.execute(
            send_runs.insert().values(id=1, frequency="all", number=1, issued=OLD, finished=OLD)
        )
        connection.execute(
            send_runs.insert().values(id=2, frequency="weekly", number=1, issued=OLD)
        )  # unfinished
        for run_id in (1, 2):
            connection.execute(
                send_claims.insert().values(
                    run_id=run_id, subscriber="marie.dupont@example.org", state="done"
                )
            )
        for received in (OLD, RECENT):  # what the bounce mailbox said, long ago and lately
            connection.execute(
                bounce_events.insert().values(
                    subscriber="karim.benali@example.org", kind="soft", status="4.2.2", received=received
                )
            )


def _count(project: Path, table: object, *where: object) -> int:
    with _store(project) as store, store.engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(table).where(*where)).scalar() or 0)  # type: ignore[arg-type]


def test_purge_applies_the_retention_periods_and_says_what_went(run: Run, project: Path) -> None:
    """Old sign-up requests go; the consent proof of a subscription ended over 3 years ago goes;
    that old suppression stays, as a hash only; digests over 13 months old become monthly
    counts, and bounce reports as old go; a digest not yet delivered and an unfinished send run
    stay, whatever their age."""
    _seed(project, run)
    result = run("purge")
    assert result.code == 0, result.err
    assert result.out.splitlines() == [
        "2 sign-up and export requests deleted",
        "1 web choices and consent proofs deleted (subscription ended)",
        "1 suppressed addresses kept only as a keyed hash",
        "2 digests (5 items) aggregated into monthly counts and deleted",
        "1 finished send runs deleted, with their claims",
        "1 bounce and complaint reports deleted",
    ]
    with _store(project) as store, store.engine.connect() as connection:
        assert list(connection.execute(select(bounce_events.c.received)).scalars()) == [RECENT]
        assert list(connection.execute(select(signup_requests.c.email)).scalars()) == ["neuf@example.org"]
        assert list(connection.execute(select(subscriber_choices.c.subscriber)).scalars()) == [
            "recent@example.org"
        ]
        assert sorted(connection.execute(select(digests.c.id)).scalars()) == [3, 4]
        assert _count(project, digest_items, digest_items.c.digest_id == 3) == 1
        month = f"{OLD.astimezone(UTC):%Y-%m}"
        assert connection.execute(select(ledger_counts)).all() == [(month, "weekly", "sent", 2, 5)]
        assert list(connection.execute(select(send_runs.c.id)).scalars()) == [2]
        assert "parti@example.org" in Ledger(store).suppressed()  # still never mailed
        readable = list(connection.execute(select(suppressions.c.subscriber)).scalars())
        assert "parti@example.org" not in readable and "recent@example.org" in readable
        kept = " ".join(str(row) for row in connection.execute(select(suppressions)))
        assert "parti@example.org" not in kept, "its bounce diagnostic quoted it"
    again = run("purge")
    assert again.code == 0 and all(line.startswith("0 ") for line in again.out.splitlines())


def test_purged_counts_add_up_month_after_month(run: Run, project: Path) -> None:
    """A second purge adding digests of a month already counted adds to its counts."""
    _seed(project, run)
    assert run("purge").code == 0
    with _store(project) as store, store.engine.begin() as connection:
        _digest(connection, 9, "claire.martin@example.org", OLD, state="sent", item_ids=[1])
    assert (
        run("purge").out.splitlines()[3] == "1 digests (1 items) aggregated into monthly counts and deleted"
    )
    with _store(project) as store, store.engine.connect() as connection:
        assert connection.execute(select(ledger_counts.c.digests, ledger_counts.c["items"])).all() == [(3, 6)]


def test_the_ledger_is_kept_for_the_longest_look_back(run: Run, project: Path) -> None:
    """With a look-back longer than the ledger's months (the sample config.yaml's demo: monthly
    3650 days), digests stay as long as a digest may still choose their items: they keep an
    item from going twice."""
    _seed(project, run, lookback="monthly: 3650")
    assert (
        run("purge").out.splitlines()[3] == "0 digests (0 items) aggregated into monthly counts and deleted"
    )


def test_the_refresh_applies_the_retention_periods(run: Run, project: Path) -> None:
    """`run --once` (each daemon refresh runs the same cycle) purges too."""
    _seed(project, run)
    assert run("run", "--once").code == 0
    assert _count(project, signup_requests) == 1
    assert _count(project, digests, digests.c.id.in_([1, 2])) == 0


def test_purge_waits_for_the_runner_then_purges(run: Run, project: Path) -> None:
    """While a runner holds the store, `purge` says it waits and for whom, then purges once the
    runner lets go; with no time to wait, it says who holds the store and exits 1."""
    _seed(project, run)
    with _store(project) as store:
        lock = RunnerLock(store, "run")
        lock.acquire()
        try:
            refused = run("purge", "--wait", "0")
            assert refused.code == 1 and "another syndicator runs on this store" in refused.err
            assert "(run)" in refused.err and _count(project, signup_requests) == 3
            letting_go = threading.Timer(1.5, lock.release)
            letting_go.start()
            started = time.monotonic()
            result = run("purge", "--wait", "60")
            waited = time.monotonic() - started
        finally:
            lock.release()
    assert result.code == 0 and waited >= 1.0
    assert result.err.startswith("waiting for the runner to finish (pid ")
    assert result.out.startswith("2 sign-up and export requests deleted")


def test_a_month_back_from_the_31st_is_the_months_last_day() -> None:
    """Calendar months: 31 March minus one month is 28 February (29 in a leap year)."""
    assert months_before(datetime(2026, 3, 31, 12, tzinfo=UTC), 1) == datetime(2026, 2, 28, 12, tzinfo=UTC)
    assert months_before(datetime(2028, 3, 31, tzinfo=UTC), 13) == datetime(2027, 2, 28, tzinfo=UTC)
    assert months_before(datetime(2026, 1, 15, tzinfo=UTC), 13) == datetime(2024, 12, 15, tzinfo=UTC)

"""Send runs shared by any number of identical workers, coordinated only through the database.

A run is a row per frequency and number (`send_runs`): the first worker to start opens it and
lists the subscribers due in it (`send_claims`, one row each); a worker started meanwhile, on this
machine or another, joins the open run instead. Each worker then claims batches of due
subscribers: `SELECT … FOR UPDATE SKIP LOCKED` on PostgreSQL, one `UPDATE … RETURNING` (SQLite's
write lock makes it atomic) elsewhere. A claim carries a random token and a lease whose end is
computed with the database server's clock (`now()`, `julianday('now')`), never a worker's; a
heartbeat renews it. A subscriber whose lease ran out is due again, for any live worker; the late
worker is fenced: its writes on those rows carry its token and are refused. When no subscriber is
left due or claimed, the run is finished. No host name, process id or local clock is involved.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any, TypeVar, cast

from sqlalchemy import (
    Connection,
    Float,
    and_,
    bindparam,
    case,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.expression import Exists
from sqlalchemy.sql.functions import FunctionElement

from syndicator.db.schema import send_claims, send_pace, send_runs, send_workers
from syndicator.db.store import Store

log = logging.getLogger(__name__)

LEASE = 30.0  # seconds a claim lasts without a heartbeat: a dead worker's share waits this long
ALL = "all"  # the frequency of a run over every subscriber
_T = TypeVar("_T")


class db_clock(FunctionElement[float]):
    """Seconds since the epoch, on the database server's clock."""

    type = Float()
    inherit_cache = True


@compiles(db_clock)
def _clock_default(element: db_clock, compiler: Any, **kw: Any) -> str:
    return "((julianday('now') - 2440587.5) * 86400.0)"


@compiles(db_clock, "postgresql")
def _clock_postgresql(element: db_clock, compiler: Any, **kw: Any) -> str:
    return "EXTRACT(EPOCH FROM now())"


@dataclass(frozen=True, slots=True)
class Run:
    """A send run as a worker joined it."""

    id: int
    frequency: str
    number: int
    issued: datetime


@dataclass(frozen=True, slots=True)
class Claim:
    """A batch of subscribers this worker holds, under one token."""

    token: str
    subscribers: tuple[str, ...]


def retrying(action: Callable[[], _T], *, what: str, attempts: int = 8, first: float = 0.25) -> _T:
    """`action()`, tried again with a growing pause (0.25 s, 0.5 s … up to 8 s) while the database
    cannot be reached: a restart of PostgreSQL during a send is waited for, not fatal."""
    tries = _tries(action, what, attempts, first)
    try:
        while True:
            time.sleep(next(tries))
    except StopIteration as done:
        return cast(_T, done.value)


async def retrying_here(action: Callable[[], _T], *, what: str, attempts: int = 8, first: float = 0.25) -> _T:
    """`retrying` for the event loop: `action()` runs in the loop's own thread, and the pauses
    let the loop go on. A send's statements run so (`syndicator.digests.send`): handing each to
    a thread cost more than the statement (bench/rss2email.py's 0 ms target)."""
    tries = _tries(action, what, attempts, first)
    try:
        while True:
            await asyncio.sleep(next(tries))
    except StopIteration as done:
        return cast(_T, done.value)


def _tries(action: Callable[[], _T], what: str, attempts: int, first: float) -> Generator[float, None, _T]:
    """The policy of `retrying` and `retrying_here`: runs `action()`, yields the pause to wait
    after each failure that says the database cannot be reached, and returns what `action()`
    returned; any other error, or the last, is raised."""
    pause = first
    for attempt in range(attempts):
        try:
            return action()
        except (OperationalError, DBAPIError) as error:
            if isinstance(error, IntegrityError) or attempt == attempts - 1:
                raise
            if not error.connection_invalidated and not isinstance(error, OperationalError):
                raise
            log.warning("%s: database unavailable (%s); trying again in %.1f s", what, error.orig, pause)
        yield pause
        pause = min(pause * 2, 8.0)
    raise AssertionError("unreachable")


class Runs:
    """The runs, claims and workers of a store."""

    def __init__(self, store: Store, *, lease: float = LEASE) -> None:
        self.store, self.engine, self.lease = store, store.engine, lease

    # --- runs -------------------------------------------------------------------------------

    def join(
        self,
        frequency: str | None,
        subscribers: Iterable[str],
        issued: datetime,
        *,
        run_id: int | None = None,
    ) -> tuple[Run, str]:
        """Enlist this worker in the open run of this frequency, or in a new one due to
        `subscribers` at `issued`; the run and this worker's token. An open run that no live
        worker serves any more (they all died, or a policy refusal stopped them) is closed, and a
        new one lists every subscriber again: the digests it left unconfirmed go first. Given
        `run_id` (the run `--workers N` opened for its workers), that run, even if finished:
        a worker that starts after the others sent everything then finds nothing left."""
        key = frequency or ALL
        due = sorted(set(subscribers))
        worker = secrets.token_hex(16)
        for _ in range(5):  # a lost race to open a run is a run to join
            try:
                # Joins take turns (`Store.writing`): else, on PostgreSQL, a worker could find no
                # open run, then number its own after the one another worker just committed,
                # and both runs would list every subscriber.
                with self.store.writing() as connection:
                    if run_id is None:
                        run = self._open_run(connection, key, issued)
                    else:
                        run = self._run(connection, run_id)
                    if run is None:
                        last = connection.execute(
                            select(func.max(send_runs.c.number)).where(send_runs.c.frequency == key)
                        ).scalar()
                        number = (last or 0) + 1
                        inserted = connection.execute(
                            insert(send_runs).values(frequency=key, number=number, issued=issued)
                        ).inserted_primary_key
                        assert inserted is not None
                        run = Run(int(inserted[0]), key, number, issued)
                        for start in range(0, len(due), 500):
                            part = due[start : start + 500]
                            connection.execute(
                                insert(send_claims),
                                [{"run_id": run.id, "subscriber": s, "state": "due"} for s in part],
                            )
                    connection.execute(
                        insert(send_workers).values(
                            token=worker, run_id=run.id, name=f"{socket.gethostname()} pid {os.getpid()}",
                            expires=db_clock() + self.lease,
                        )
                    )  # fmt: skip
                    return run, worker
            except IntegrityError:
                continue
        raise RuntimeError(f"could not open or join a {key} send run")

    def open(self, frequency: str | None, subscribers: Iterable[str], issued: datetime) -> Run:
        """The run of this frequency that workers started now should share: the open one, or a
        new one due to `subscribers` at `issued`."""
        run, worker = self.join(frequency, subscribers, issued)
        self.leave(worker)
        return run

    @staticmethod
    def _run(connection: Connection, run_id: int) -> Run:
        row = connection.execute(select(send_runs).where(send_runs.c.id == run_id)).one()
        return Run(row.id, row.frequency, row.number, row.issued)

    def _open_run(self, connection: Connection, key: str, issued: datetime) -> Run | None:
        """The open run of this frequency that a live worker serves; one no one serves is closed."""
        found = connection.execute(
            select(send_runs).where(send_runs.c.frequency == key, send_runs.c.finished.is_(None))
        ).all()
        for row in found:
            served = connection.execute(
                select(func.count()).where(
                    send_workers.c.run_id == row.id, send_workers.c.expires >= db_clock()
                )
            ).scalar()
            if served:
                return Run(row.id, key, row.number, row.issued)
            connection.execute(update(send_runs).where(send_runs.c.id == row.id).values(finished=issued))
            connection.execute(delete(send_workers).where(send_workers.c.run_id == row.id))
            # Its claims die with it: one renewed by a digest taken just before its worker died
            # outlives that worker's heartbeat, and would keep the digest from the next run.
            connection.execute(
                update(send_claims)
                .where(send_claims.c.run_id == row.id, send_claims.c.state == "claimed")
                .values(expires=0.0)
            )
        return None

    def finish_if_done(self, run: Run, now: datetime) -> bool:
        """Mark the run finished when no subscriber is due or claimed; whether it is."""
        left = select(send_claims.c.subscriber).where(
            send_claims.c.run_id == run.id, send_claims.c.state != "done"
        )
        with self.engine.begin() as connection:
            connection.execute(
                update(send_runs)
                .where(send_runs.c.id == run.id, send_runs.c.finished.is_(None), ~left.exists())
                .values(finished=now)
            )  # fmt: skip
            finished = connection.execute(
                select(send_runs.c.finished).where(send_runs.c.id == run.id)
            ).scalar()
        return finished is not None

    # --- claims -----------------------------------------------------------------------------

    def claim(self, run: Run, size: int) -> Claim | None:
        """Up to `size` subscribers due in the run (or whose lease ran out), held under a new
        token; fewer when the run has few left for its live workers, so that each gets a share
        (a third of what is due per worker at most)."""
        token = secrets.token_hex(16)
        with self.engine.connect() as connection:
            due = (
                connection.execute(
                    select(func.count()).where(send_claims.c.run_id == run.id, send_claims.c.state == "due")
                ).scalar()
                or 0
            )
            live = (
                connection.execute(
                    select(func.count()).where(
                        send_workers.c.run_id == run.id, send_workers.c.expires >= db_clock()
                    )
                ).scalar()
                or 1
            )
        size = max(1, min(size, due // (3 * live)))
        takeable = or_(
            send_claims.c.state == "due",
            and_(send_claims.c.state == "claimed", send_claims.c.expires < db_clock()),
        )
        free = send_claims.alias("free")  # not correlated with the UPDATE: its own scan, limited
        chosen = (
            select(free.c.subscriber)
            .where(
                free.c.run_id == run.id,
                or_(free.c.state == "due", and_(free.c.state == "claimed", free.c.expires < db_clock())),
            )
            .order_by(free.c.subscriber)
            .limit(size)
            .with_for_update(skip_locked=True)  # PostgreSQL; SQLite's write lock serialises the UPDATE
            # A CTE: run once. As an `IN (subquery)`, PostgreSQL may run it again for each row,
            # each time skipping the rows this statement just locked: it took the whole run.
            .cte("picked")
        )
        with self.engine.begin() as connection:
            taken = connection.execute(
                update(send_claims)
                .where(
                    send_claims.c.run_id == run.id, send_claims.c.subscriber.in_(select(chosen.c.subscriber))
                )
                .where(takeable)
                .values(state="claimed", token=token, expires=db_clock() + self.lease)
                .returning(send_claims.c.subscriber)
            ).scalars()
            subscribers = tuple(sorted(taken))
        return Claim(token, subscribers) if subscribers else None

    def waiting(self, run: Run) -> int:
        """How many subscribers of the run are held by live claims of other workers (or due)."""
        with self.engine.connect() as connection:
            return int(
                connection.execute(
                    select(func.count()).where(send_claims.c.run_id == run.id, send_claims.c.state != "done")
                ).scalar()
                or 0
            )

    def renew(self, tokens: Iterable[str]) -> int:
        """Push back the leases of these claims that have not run out; how many rows were."""
        held = list(tokens)
        if not held:
            return 0
        with self.engine.begin() as connection:
            return connection.execute(
                update(send_claims)
                .where(send_claims.c.token.in_(held), send_claims.c.state == "claimed",
                       send_claims.c.expires >= db_clock())
                .values(expires=db_clock() + self.lease)
            ).rowcount  # fmt: skip

    def done(self, claim: Claim, outcomes: Mapping[str, str]) -> int:
        """Record each subscriber's outcome and release it, each on its own; those refused (the
        lease ran out and another worker may have it) are not counted."""
        confirmed = 0
        # One transaction for the batch: each digest's own outcome is already on record in the
        # ledger, so if this one fails, the subscribers are due again when the lease runs out
        # and the next worker finds nothing left to send them.
        with self.engine.begin() as connection:
            for subscriber, outcome in outcomes.items():
                values = {"d_token": claim.token, "d_subscriber": subscriber, "d_outcome": outcome[:20]}
                confirmed += connection.execute(_DONE, values).rowcount
        return confirmed

    def give_back(self, claim: Claim, subscribers: Iterable[str]) -> None:
        """Make these subscribers due again at once (this worker stops before them)."""
        left = list(subscribers)
        if left:
            with self.engine.begin() as connection:
                connection.execute(
                    update(send_claims)
                    .where(send_claims.c.token == claim.token, send_claims.c.subscriber.in_(left),
                           send_claims.c.state == "claimed")
                    .values(state="due", token=None, expires=None)
                )  # fmt: skip

    # --- workers ----------------------------------------------------------------------------

    def beat(self, worker: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(send_workers)
                .where(send_workers.c.token == worker)
                .values(expires=db_clock() + self.lease)
            )

    def leave(self, worker: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(send_workers).where(send_workers.c.token == worker))

    def next_slots(self, interval: float, count: int) -> float:
        """Take the next `count` message slots of the deployment, `interval` apart; how many
        seconds to wait for the first."""
        clock = db_clock()
        start = case((send_pace.c.next_at > clock, send_pace.c.next_at), else_=clock)
        span = interval * count
        for _ in range(3):
            with self.engine.begin() as connection:
                wait = connection.execute(
                    update(send_pace)
                    .where(send_pace.c.key == "smtp")
                    .values(next_at=start + span)
                    .returning(send_pace.c.next_at - span - clock)
                ).scalar()
            if wait is not None:
                return max(0.0, float(wait))
            with contextlib.suppress(IntegrityError), self.engine.begin() as connection:
                connection.execute(insert(send_pace).values(key="smtp", next_at=0.0))
        raise RuntimeError("the send pace row cannot be written")

    def live_workers(self, run_id: int | None = None) -> list[tuple[int, str]]:
        """The workers whose heartbeat is current: (run id, name)."""
        query = select(send_workers.c.run_id, send_workers.c.name).where(send_workers.c.expires >= db_clock())
        if run_id is not None:
            query = query.where(send_workers.c.run_id == run_id)
        with self.engine.connect() as connection:
            return [(int(r), str(n)) for r, n in connection.execute(query.order_by(send_workers.c.name))]

    def open_runs(self) -> list[tuple[Run, dict[str, int]]]:
        """The runs not finished, each with how many subscribers are in each state or outcome."""
        with self.engine.connect() as connection:
            runs = [
                Run(r.id, r.frequency, r.number, r.issued)
                for r in connection.execute(select(send_runs).where(send_runs.c.finished.is_(None)))
            ]
            found = []
            for run in runs:
                rows = connection.execute(
                    select(func.coalesce(send_claims.c.outcome, send_claims.c.state), func.count())
                    .where(send_claims.c.run_id == run.id)
                    .group_by(func.coalesce(send_claims.c.outcome, send_claims.c.state))
                )
                found.append((run, {str(k): int(v) for k, v in rows}))
            return found


_DONE = (
    update(send_claims)
    .where(
        send_claims.c.token == bindparam("d_token"),
        send_claims.c.subscriber == bindparam("d_subscriber"),
        send_claims.c.state == "claimed",
    )
    .values(state="done", outcome=bindparam("d_outcome"), expires=None)
)


class SharedPace:
    """`email.rate_per_second` for all the workers together: slots are taken from one row
    (`send_pace`), moved on by 1/rate per slot in one atomic UPDATE on the database's clock, and
    each message waits for its slot. The wait is computed by the database (slot − its now), so
    the workers' clocks play no part.

    A worker takes a tenth of a second's worth of slots at a time (one at least): the pace row
    is the one row every worker writes, and a transaction per message on it made it the queue
    every message of every worker waited in (bench/workers.py, the scale-out target); at a rate
    no relay reaches, a few slots at a time still cost a write for every few messages
    (bench/rss2email.py, at 0 ms). Slots taken and not used are lost: the rate is a ceiling."""

    def __init__(self, runs: Runs, rate: float) -> None:
        self.runs, self.interval = runs, 1.0 / rate
        self.block = max(1, int(rate / 10))
        self._next = 0.0  # the next slot taken, as a moment of time.monotonic()
        self._left = 0  # slots taken and not yet used, from _next on
        self._lock = asyncio.Lock()

    async def take(self, interrupt: asyncio.Event) -> bool:
        if interrupt.is_set():
            return False
        async with self._lock:
            if not self._left:
                take = partial(self.runs.next_slots, self.interval, self.block)
                wait = await asyncio.to_thread(retrying, take, what="pacing")
                self._next, self._left = time.monotonic() + wait, self.block
            slot, self._next, self._left = self._next, self._next + self.interval, self._left - 1
        wait = slot - time.monotonic()
        if wait > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(interrupt.wait(), wait)
        return not interrupt.is_set()

    def give_back(self) -> None:
        """A slot taken for nothing stays taken: the pace is a ceiling, never exceeded."""


class Heartbeat:
    """A thread renewing this worker's leases every third of a lease, while in a `with` block."""

    def __init__(self, runs: Runs, worker: str) -> None:
        self.runs, self.worker = runs, worker
        self.tokens: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beating, name="send-heartbeat", daemon=True)

    def hold(self, token: str) -> None:
        with self._lock:
            self.tokens.add(token)

    def drop(self, token: str) -> None:
        with self._lock:
            self.tokens.discard(token)

    def _beating(self) -> None:
        while not self._stop.wait(self.runs.lease / 3):
            with self._lock:
                tokens: Sequence[str] = sorted(self.tokens)
            try:
                self.runs.beat(self.worker)
                self.runs.renew(tokens)
            except Exception:  # a database hiccup: the next beat tries again, the lease may run out
                log.warning(
                    "send heartbeat failed (the next one tries again)",
                    exc_info=log.isEnabledFor(logging.DEBUG),
                )

    def __enter__(self) -> Heartbeat:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# Built once, not per call: SQLAlchemy takes longer to build an UPDATE than SQLite to run it,
# and this one runs for every batch of digests recorded (bench/workers.py, the scale-out target).
_RENEW_HELD = (
    update(send_claims)
    .where(
        send_claims.c.token == bindparam("c_token"),
        send_claims.c.state == "claimed",
        send_claims.c.expires >= db_clock(),
    )
    .values(expires=db_clock() + bindparam("c_lease", type_=Float()))
    .returning(send_claims.c.subscriber)
)


def held_by(connection: Connection, token: str, lease: float) -> set[str]:
    """The subscribers this claim still holds, its lease renewed within the caller's
    transaction; those it no longer holds are fenced (the caller writes nothing for them)."""
    return set(connection.execute(_RENEW_HELD, {"c_token": token, "c_lease": lease}).scalars())


def holds(token: Any, subscriber: Any) -> Exists:
    """The condition that claim `token` still holds `subscriber`, its lease not run out, for a
    statement that writes only then (the fence of a single statement)."""
    return exists().where(
        send_claims.c.token == token,
        send_claims.c.subscriber == subscriber,
        send_claims.c.state == "claimed",
        send_claims.c.expires >= db_clock(),
    )

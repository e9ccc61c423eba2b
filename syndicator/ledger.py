"""The delivery ledger: every digest is recorded, with its items, before it is delivered.

States: `pending` (recorded, not yet handed to a transport) → `sending` (claimed by a run) →
`sent` | `failed`. The unique (subscriber, item) pair keeps an item from going to anyone twice.
A run claims a row before delivering it; a row left `sending` by a run that died (same host and
its process gone, or its claim older than the lease) is claimed again and delivered with the
same Message-ID and bytes. The message bytes are kept until the digest is sent.

A digest that could not be built (its address, a template...) is recorded `unbuilt`, with the
reason and no items: that subscriber's failure, shown by `status`; its items stay theirs for the
next run, and a digest's window (`lasts`) ignores such rows.

A delivery claims its batch of digests in one transaction before sending any (`claim_all`),
gives back at the end those it did not send (`release`), and confirms each digest once it is
accepted, through `GroupedWrites`: the confirmations asked for at the same moment share a
transaction, and each caller still waits for its own.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache, partial
from typing import Any

from sqlalchemy import Connection, and_, bindparam, delete, func, insert, or_, select, update
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.compiler import SQLCompiler

from .addresses import mailbox
from .schema import AwareDateTime, digest_items, digests, items, suppressions
from .store import Store

LEASE = timedelta(minutes=15)  # a claim older than this is taken over whatever its host
UNBUILT = "unbuilt"  # the state of a digest that could not be built: a failure with no items
RUN_ID = f"{socket.gethostname()}:{os.getpid()}:{datetime.now(UTC).timestamp():.0f}"


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One digest as the ledger holds it."""

    id: int
    subscriber: str
    frequency: str
    since: datetime | None
    issued: datetime
    message_id: str
    state: str
    message: bytes | None
    attempts: int
    error: str | None
    sent_at: datetime | None


# Statements made once, so that SQLAlchemy finds their compiled form without building them anew.
_NEW_DIGEST = insert(digests)
_SET_MESSAGE = (
    update(digests)
    .where(digests.c.id == bindparam("b_id"))
    .values(message_id=bindparam("b_mid"), message=bindparam("b_data"))
)
_CLAIM_PENDING = (
    update(digests)
    .where(digests.c.id == bindparam("b_id"), digests.c.state == "pending")
    .values(state="sending", claimed_by=bindparam("b_by"), claimed_at=bindparam("b_at"),
            attempts=digests.c.attempts + 1)
)  # fmt: skip
_CLAIM_ALL_PENDING = (
    update(digests)
    .where(digests.c.state == "pending")
    .values(state="sending", claimed_by=bindparam("b_by"), claimed_at=bindparam("b_at"),
            attempts=digests.c.attempts + 1)
    .returning(digests.c.id)
)  # fmt: skip
_SENT = (
    update(digests)
    .where(digests.c.id == bindparam("b_id"))
    .values(state="sent", sent_at=bindparam("b_at"), message=None, error=None)
)
_DATES = AwareDateTime()


def _as_stored(moment: datetime) -> datetime:
    """A date as the ledger gives it back once stored."""
    stored = _DATES.process_result_value(_DATES.process_bind_param(moment, None), None)
    return moment if stored is None else stored  # never None for a date


def _row(row: object) -> LedgerRow:
    return LedgerRow(*(getattr(row, name) for name in LedgerRow.__dataclass_fields__))


def _alive(claimed_by: str | None) -> bool:
    """Whether the run that claimed a row may still be delivering it."""
    if not claimed_by:
        return False
    host, _, rest = claimed_by.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine's run: only the lease can tell
    if claimed_by == RUN_ID:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class AlreadyRecorded(Exception):
    """Another run recorded a digest holding some of these items for this subscriber first."""


class Ledger:
    """Digests, what they hold, and the suppression list, in the store's database."""

    def __init__(self, store: Store) -> None:
        self.engine = store.engine
        # Writers take turns here, woken as soon as the one before is done; SQLite's own wait
        # for its lock polls, sleeping milliseconds at a time.
        self._writing: AbstractContextManager[Any] = threading.Lock()

    def share_turns(self, lock: AbstractContextManager[Any]) -> AbstractContextManager[Any]:
        """Take turns to write with the holders of `lock` (another process's ledger, say); the
        lock used until now."""
        previous, self._writing = self._writing, lock
        return previous

    # --- reading --------------------------------------------------------------------------

    def last(self, subscriber: str) -> LedgerRow | None:
        """The subscriber's latest digest, whatever its state (one never built aside)."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(*digests.c)
                .where(digests.c.subscriber == subscriber, digests.c.state != UNBUILT)
                .order_by(digests.c.id.desc())
                .limit(1)
            ).first()
        return _row(row) if row else None

    def lasts(self) -> dict[str, LedgerRow]:
        """Every subscriber's latest digest (one never built aside)."""
        latest = (
            select(func.max(digests.c.id))
            .where(digests.c.state != UNBUILT)
            .group_by(digests.c.subscriber)
            .scalar_subquery()
        )
        with self.engine.connect() as connection:
            rows = connection.execute(select(*digests.c).where(digests.c.id.in_(latest)))
            return {row.subscriber: _row(row) for row in rows}

    def sent_items(self, subscriber: str) -> set[int]:
        """The ids of every item already in one of the subscriber's digests."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(digest_items.c.item_id).where(digest_items.c.subscriber == subscriber)
            )
            return {row.item_id for row in rows}

    def sent_by_subscriber(self, since: date | None = None) -> dict[str, set[int]]:
        """For every subscriber, the ids of the items already in one of their digests; with
        `since`, only items published (or, undated, first seen) on or after that day: those that
        can still be chosen. The ledger keeps every item ever sent, which grows for years.

        The items are chosen first, then `digest_items` is read through once: an index by item
        would make every digest's recording slower (measured: 3× for digests of 600 items)."""
        query = select(digest_items.c.subscriber, digest_items.c.item_id)
        if since is not None:
            start = datetime.combine(since, time(), UTC)
            undated = and_(items.c.published.is_(None), items.c.first_seen >= start)
            recent = select(items.c.id).where(or_(items.c.published >= since, undated))
            query = query.where(digest_items.c.item_id.in_(recent))
        found: dict[str, set[int]] = {}
        with self.engine.connect() as connection:
            for subscriber, item_id in connection.execute(query):
                found.setdefault(subscriber, set()).add(item_id)
        return found

    def sent_on(self, subscriber: str, item_id: int) -> LedgerRow | None:
        """The digest that carried this item to this subscriber, if any."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(*digests.c)
                .join(digest_items, digest_items.c.digest_id == digests.c.id)
                .where(digest_items.c.subscriber == subscriber, digest_items.c.item_id == item_id)
            ).first()
        return _row(row) if row else None

    def unfinished(self, subscriber: str) -> list[LedgerRow]:
        """The subscriber's digests recorded but not confirmed sent or failed, oldest first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(*digests.c)
                .where(digests.c.subscriber == subscriber, digests.c.state.in_(("pending", "sending")))
                .order_by(digests.c.id)
            )
            return [_row(row) for row in rows]

    def unfinished_counts(self) -> dict[str, int]:
        """For each subscriber with some, how many digests are recorded but not yet confirmed."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(digests.c.subscriber, func.count())
                .where(digests.c.state.in_(("pending", "sending")))
                .group_by(digests.c.subscriber)
            )
            return {str(subscriber): int(count) for subscriber, count in rows}

    def failures(self) -> list[LedgerRow]:
        """For each subscriber whose latest digest failed or could not be built, that digest
        (with its reason in `error`), by address."""
        latest = select(func.max(digests.c.id)).group_by(digests.c.subscriber).scalar_subquery()
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(*digests.c)
                .where(digests.c.id.in_(latest), digests.c.state.in_(("failed", UNBUILT)))
                .order_by(digests.c.subscriber)
            )
            return [_row(row) for row in rows]

    def counts(self) -> dict[str, int]:
        """How many digests are in each state."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(digests.c.state, func.count()).group_by(digests.c.state))
            return {str(state): int(count) for state, count in rows}

    # --- writing --------------------------------------------------------------------------

    def record(
        self,
        *,
        subscriber: str,
        frequency: str,
        since: datetime | None,
        issued: datetime,
        item_ids: Iterable[int],
        message: Callable[[int], tuple[str, bytes]],
    ) -> LedgerRow:
        """Record a digest and its items as `pending`, in one transaction. `message(row id)`
        gives its Message-ID and bytes, so both derive from the row and never change.

        Raises `AlreadyRecorded` when a concurrent run got there first (the unique pair of
        subscriber and item says so); nothing is then written."""
        try:
            with self._writing, self.engine.begin() as connection:
                values = {
                    "subscriber": subscriber,
                    "frequency": frequency,
                    "since": since,
                    "issued": issued,
                    "message_id": f"<unset-{subscriber}-{issued.timestamp()}>",
                    "state": "pending",
                    "attempts": 0,
                }
                inserted = connection.execute(_NEW_DIGEST, values).inserted_primary_key
                digest_id = int(inserted[0]) if inserted else 0
                _insert_items(connection, digest_id, subscriber, item_ids)
                message_id, data = message(int(digest_id))
                connection.execute(_SET_MESSAGE, {"b_id": digest_id, "b_mid": message_id, "b_data": data})
        except IntegrityError:
            raise AlreadyRecorded(subscriber) from None
        # The row as the database now holds it (and would give it back, dates and all).
        return LedgerRow(
            id=digest_id, subscriber=subscriber, frequency=frequency, since=since and _as_stored(since),
            issued=_as_stored(issued), message_id=message_id, state="pending", message=data,
            attempts=0, error=None, sent_at=None,
        )  # fmt: skip

    def unbuilt(self, *, subscriber: str, frequency: str, issued: datetime, error: str) -> None:
        """Record that this subscriber's digest could not be built, and why."""
        with self._writing, self.engine.begin() as connection:
            connection.execute(
                _NEW_DIGEST,
                {
                    "subscriber": subscriber, "frequency": frequency, "since": None, "issued": issued,
                    "message_id": f"<unbuilt.{uuid.uuid4().hex}@syndicator.invalid>", "state": UNBUILT,
                    "attempts": 0, "error": error[:2000],
                },
            )  # fmt: skip

    def claim(self, row: LedgerRow, now: datetime) -> bool:
        """Take a digest for delivery; False when it is done or another living run has it.

        Optimistic: the update only applies if the row is still as it was read, so of two runs
        racing for one row exactly one wins."""
        return self.write([partial(_claim, row=row, now=now)])[0]

    def claim_all(self, rows: Sequence[LedgerRow], now: datetime) -> set[int]:
        """`claim` each digest, in one transaction; the ids of those taken. The pending ones, the
        usual case, in a statement per `_ROWS` (a batch holds the write lock for a moment, not
        for a statement per row), then the others one by one."""
        with self._writing, self.engine.begin() as connection:
            taken: set[int] = set()
            if connection.dialect.update_returning:
                ids = [row.id for row in rows]
                for start in range(0, len(ids), _ROWS):
                    claimed = connection.execute(
                        _CLAIM_ALL_PENDING.where(digests.c.id.in_(ids[start : start + _ROWS])),
                        {"b_by": RUN_ID, "b_at": now},
                    )
                    taken.update(int(digest_id) for digest_id in claimed.scalars())
            taken.update(
                row.id for row in rows if row.id not in taken and _claim(connection, row=row, now=now)
            )
            return taken

    def release(self, rows: Sequence[LedgerRow]) -> None:
        """Give back digests this run claimed and did not hand to a transport: pending again."""
        self.write([partial(_release, row=row) for row in rows])

    def sent(self, row: LedgerRow, now: datetime) -> None:
        """The transport accepted the digest: done, and its bytes are no longer kept."""
        self.write([partial(_sent, row=row, now=now)])

    def failed(self, row: LedgerRow, error: str, *, final: bool) -> None:
        """Delivery failed: for good (`failed`), or to be tried again by a later run (`pending`)."""
        self.write([partial(_failed, row=row, error=error, final=final)])

    def write(self, steps: Sequence[Step]) -> list[bool]:
        """Run these writes in order, in one transaction; what each returned."""
        with self._writing, self.engine.begin() as connection:
            return [step(connection) for step in steps]

    # --- suppression list -------------------------------------------------------------------

    def suppress(self, subscriber: str, reason: str, now: datetime, detail: str | None = None) -> None:
        """Add an address to the suppression list (idempotent: the first reason stays)."""
        self.write([partial(_suppress, subscriber=subscriber, reason=reason, now=now, detail=detail)])

    def unsuppress(self, subscriber: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(suppressions).where(suppressions.c.subscriber == subscriber))

    def suppressed(self) -> Suppressions:
        """Every suppressed address with its reason and since when."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(suppressions.c.subscriber, suppressions.c.reason, suppressions.c.since)
            )
            return Suppressions({row.subscriber: (row.reason, row.since) for row in rows})


class Suppressions(Mapping[str, tuple[str, datetime]]):
    """The suppressed addresses (reason, since), looked up by mailbox: an address unsubscribed
    in one form (`bob@xn--mairie-vry-h7a.fr`, as a sign-up stores it) is suppressed in the other
    (`bob@mairie-évry.fr`, as config.yaml may list it) too."""

    def __init__(self, rows: Mapping[str, tuple[str, datetime]]) -> None:
        self._rows = {mailbox(address): row for address, row in rows.items()}

    def __getitem__(self, address: str) -> tuple[str, datetime]:
        return self._rows[mailbox(address)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


def _insert_items(connection: Connection, digest_id: int, subscriber: str, item_ids: Iterable[int]) -> None:
    """A row per item of a digest, in statements of up to `_ROWS` rows each, sent straight to
    the database driver. A digest may hold hundreds of items: SQLAlchemy's work for each row
    would cost more than the row, and the driver's executemany runs (and lets other threads
    run, then waits to get back) once per row."""
    compiled = _items_insert(connection.dialect)
    fixed = {"digest_id": digest_id, "subscriber": subscriber}
    if not compiled.positional:  # named parameters (psycopg): multi-row INSERTs made by SQLAlchemy
        # Not executemany: psycopg pipelines it, and a pair already recorded by a concurrent
        # run (AlreadyRecorded) then also logs "error ignored terminating <psycopg.Pipeline>".
        rows = [{**fixed, "item_id": item_id} for item_id in item_ids]
        for start in range(0, len(rows), _ROWS):
            connection.execute(insert(digest_items).values(rows[start : start + _ROWS]))
        return
    order = compiled.positiontup or ()
    at = order.index("item_id")
    row = [fixed.get(name) for name in order]
    values: list[Any] = []
    for item_id in item_ids:
        row[at] = item_id
        values += row
    width = len(order)
    for start in range(0, len(values), _ROWS * width):
        chunk = values[start : start + _ROWS * width]
        connection.exec_driver_sql(_rows_statement(str(compiled), len(chunk) // width), tuple(chunk))


@lru_cache(maxsize=4)
def _items_insert(dialect: Dialect) -> SQLCompiler:
    """The INSERT of one row of `digest_items`, compiled once per database (not once per digest)."""
    compiled = insert(digest_items).compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    return compiled


_ROWS = 100  # rows per INSERT: 300 parameters, under SQLite's oldest limit of 999


@lru_cache(maxsize=_ROWS)
def _rows_statement(single: str, count: int) -> str:
    """`INSERT … VALUES (?, ?, ?)` made to insert `count` rows."""
    head, _, group = single.partition(" VALUES ")
    return f"{head} VALUES {', '.join([group] * count)}"


# --- writes, as steps of a transaction ---------------------------------------------------------

Step = Callable[[Connection], bool]


def _claim(connection: Connection, *, row: LedgerRow, now: datetime) -> bool:
    # The usual case, a pending row, in one statement.
    taken = connection.execute(_CLAIM_PENDING, {"b_id": row.id, "b_by": RUN_ID, "b_at": now})
    if taken.rowcount:
        return True
    current = connection.execute(
        select(digests.c.state, digests.c.claimed_by, digests.c.claimed_at).where(digests.c.id == row.id)
    ).one()
    if current.state != "sending":
        return False
    if _alive(current.claimed_by) and current.claimed_at is not None and now - current.claimed_at < LEASE:
        return False
    same_claim = (
        digests.c.claimed_by.is_(None)
        if current.claimed_by is None
        else digests.c.claimed_by == current.claimed_by
    )
    result = connection.execute(
        update(digests)
        .where(digests.c.id == row.id, digests.c.state == "sending", same_claim)
        .values(state="sending", claimed_by=RUN_ID, claimed_at=now, attempts=digests.c.attempts + 1)
    )
    return bool(result.rowcount)


def _release(connection: Connection, *, row: LedgerRow) -> bool:
    released = connection.execute(
        update(digests)
        .where(digests.c.id == row.id, digests.c.state == "sending", digests.c.claimed_by == RUN_ID)
        .values(state="pending", claimed_by=None)
    )
    return bool(released.rowcount)


def _sent(connection: Connection, *, row: LedgerRow, now: datetime) -> bool:
    connection.execute(_SENT, {"b_id": row.id, "b_at": now})
    return True


def _failed(connection: Connection, *, row: LedgerRow, error: str, final: bool) -> bool:
    connection.execute(
        update(digests)
        .where(digests.c.id == row.id)
        .values(state="failed" if final else "pending", error=error[:2000], claimed_by=None)
    )
    return True


def _suppress(
    connection: Connection, *, subscriber: str, reason: str, now: datetime, detail: str | None
) -> bool:
    if connection.execute(
        select(suppressions.c.subscriber).where(suppressions.c.subscriber == subscriber)
    ).first():
        return False
    connection.execute(
        insert(suppressions).values(subscriber=subscriber, reason=reason, detail=detail, since=now)
    )
    return True


class GroupedWrites:
    """The ledger's writes of one delivery, asked for by the transport's tasks: those asked while
    a transaction runs go together into the next one. Nothing waits for a group to fill, and
    each caller returns only once its own write is committed."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._waiting: list[tuple[Step, asyncio.Future[bool]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def sent(self, row: LedgerRow, now: datetime) -> None:
        """`Ledger.sent`."""
        await self._write(partial(_sent, row=row, now=now))

    async def failed(self, row: LedgerRow, error: str, *, final: bool) -> None:
        """`Ledger.failed`."""
        await self._write(partial(_failed, row=row, error=error, final=final))

    async def suppress(self, subscriber: str, reason: str, now: datetime, detail: str | None = None) -> None:
        """`Ledger.suppress`."""
        await self._write(partial(_suppress, subscriber=subscriber, reason=reason, now=now, detail=detail))

    async def _write(self, step: Step) -> bool:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((step, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        await asyncio.sleep(0)  # the tasks ready now add their writes to this first group
        while self._waiting:
            group, self._waiting = self._waiting, []
            try:
                results = await asyncio.to_thread(self.ledger.write, [step for step, _ in group])
            except Exception as error:  # each caller gets it, as a write of its own would have
                for _, future in group:
                    if not future.done():
                        future.set_exception(error)
            else:
                for (_, future), result in zip(group, results, strict=True):
                    if not future.done():  # its caller may have been cancelled meanwhile
                        future.set_result(result)

"""The delivery ledger: every digest is recorded, with its items, before it is delivered.

States: `pending` (recorded, not yet handed to a transport) → `sending` (taken by a worker) →
`sent` | `failed`. The unique (subscriber, item) pair keeps an item from going to anyone twice.
Every write of a send carries the claim token of the worker that holds the subscriber
(syndicator/db/runs.py) and is refused once that worker's lease ran out: a digest left `sending` by a
worker that died is taken by the worker that claims its subscriber next, and delivered with the
same Message-ID and bytes. The message bytes are kept until the digest is sent.

A digest that could not be built (its address, a template...) is recorded `unbuilt`, with the
reason and no items: that subscriber's failure, shown by `status`; its items stay theirs for the
next run, and a digest's window (`lasts`) ignores such rows.

Each outcome is confirmed in its own transaction: one failed write never undoes another.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from functools import lru_cache
from typing import Any, TypeVar

from sqlalchemy import (
    Connection,
    Engine,
    Executable,
    and_,
    bindparam,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError

from syndicator.addresses import mailbox
from syndicator.db.pseudonyms import Pseudonyms, is_pseudonym
from syndicator.db.runs import db_clock, held_by, holds
from syndicator.db.schema import AwareDateTime, digest_items, digests, items, send_claims, suppressions
from syndicator.db.store import Store

UNBUILT = "unbuilt"  # the state of a digest that could not be built: a failure with no items


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


_V = TypeVar("_V")  # what a suppression list holds of each address

# Statements made once, so that SQLAlchemy finds their compiled form without building them anew.
_NEW_DIGEST = insert(digests)
# Taking a digest and confirming it sent, for every digest: SQLAlchemy takes longer to build an
# UPDATE than the database to run it (bench/workers.py, the scale-out target).
_OTHERS_HOLD = exists().where(
    send_claims.c.token == digests.c.claimed_by,
    send_claims.c.token != bindparam("t_claim"),
    send_claims.c.state == "claimed",
    send_claims.c.expires >= db_clock(),
)
_TAKE = (
    update(digests)
    .where(
        digests.c.id == bindparam("t_id"),
        # Not `in_()`: its list is spliced into the SQL at every run of the statement.
        or_(digests.c.state == "pending", digests.c.state == "sending"),
        holds(bindparam("t_claim"), digests.c.subscriber),
        or_(digests.c.claimed_by.is_(None), ~_OTHERS_HOLD),
    )
    .values(
        state="sending",
        claimed_by=bindparam("t_claim"),
        claimed_at=bindparam("t_at", type_=AwareDateTime()),
        attempts=digests.c.attempts + 1,
    )
)
_SENT = (
    update(digests)
    .where(digests.c.id == bindparam("s_id"), digests.c.claimed_by == bindparam("s_claim"))
    .values(state="sent", sent_at=bindparam("s_at", type_=AwareDateTime()), message=None, error=None)
)
_DATES = AwareDateTime()


def _as_stored(moment: datetime) -> datetime:
    """A date as the ledger gives it back once stored."""
    stored = _DATES.process_result_value(_DATES.process_bind_param(moment, None), None)
    return moment if stored is None else stored  # never None for a date


def _row(row: object) -> LedgerRow:
    return LedgerRow(*(getattr(row, name) for name in LedgerRow.__dataclass_fields__))


@dataclass(frozen=True, slots=True)
class NewDigest:
    """A digest built and not yet recorded: its subscriber, window, items, Message-ID and bytes."""

    subscriber: str
    frequency: str
    since: datetime | None
    issued: datetime
    item_ids: Sequence[int]
    message_id: str
    message: bytes


@dataclass(slots=True)
class Recorded:
    """What `Ledger.record` wrote: the rows recorded, and the subscribers of those it did not
    (`fenced`: the claim ran out, another worker has them; `already`: a concurrent run recorded
    some of the digest's items for the subscriber first)."""

    rows: list[LedgerRow] = field(default_factory=list)
    fenced: set[str] = field(default_factory=set)
    already: set[str] = field(default_factory=set)


class Ledger:
    """Digests, what they hold, and the suppression list, in the store's database."""

    def __init__(self, store: Store, *, lease: float = 30.0) -> None:
        self.store, self.engine, self.lease = store, store.engine, lease

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

    def lasts_of(self, subscribers: Sequence[str]) -> dict[str, int]:
        """The id of the latest digest (one never built aside) of each of these subscribers."""
        found: dict[str, int] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(subscribers), 500):
                rows = connection.execute(
                    select(digests.c.subscriber, func.max(digests.c.id))
                    .where(
                        digests.c.subscriber.in_(subscribers[start : start + 500]), digests.c.state != UNBUILT
                    )
                    .group_by(digests.c.subscriber)
                )
                found.update({str(subscriber): int(last) for subscriber, last in rows})
        return found

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

    def unfinished_of(self, subscribers: Sequence[str]) -> dict[str, list[LedgerRow]]:
        """`unfinished` for each of these subscribers that has some, in one query."""
        found: dict[str, list[LedgerRow]] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(subscribers), 500):
                rows = connection.execute(
                    select(*digests.c)
                    .where(digests.c.subscriber.in_(subscribers[start : start + 500]),
                           digests.c.state.in_(("pending", "sending")))
                    .order_by(digests.c.id)
                )  # fmt: skip
                for row in rows:
                    found.setdefault(row.subscriber, []).append(_row(row))
        return found

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

    def record(self, new: Sequence[NewDigest], *, claim: str | None = None) -> Recorded:
        """Record these digests and their items as `pending`, in one transaction, under `claim`
        (the token under which this worker holds their subscribers) when given.

        A digest whose subscriber's claim ran out is not written (`Recorded.fenced`). When the
        database refuses a digest because a concurrent run recorded some of its items for its
        subscriber first (their unique pair), the others are recorded each on its own, and that
        one is in `Recorded.already`: one transaction for the batch, not one per digest, is the
        0 ms target of bench/rss2email.py."""
        recorded = Recorded()
        try:
            with self.engine.begin() as connection:
                held = self._held(connection, claim, {n.subscriber for n in new})
                recorded.fenced = {n.subscriber for n in new if n.subscriber not in held}
                recorded.rows = [_insert(connection, n) for n in new if n.subscriber in held]
        except IntegrityError:
            if len(new) == 1:
                recorded.already = {new[0].subscriber}
                return recorded
            recorded = Recorded()
            for one in new:  # to find which: the others recorded all the same
                alone = self.record([one], claim=claim)
                recorded.rows += alone.rows
                recorded.fenced |= alone.fenced
                recorded.already |= alone.already
        return recorded

    def _held(self, connection: Connection, claim: str | None, subscribers: set[str]) -> set[str]:
        """Those of these subscribers that `claim` still holds, its lease renewed; all of them
        when there is no claim (a send outside the shared runs)."""
        return subscribers if claim is None else held_by(connection, claim, self.lease)

    def unbuilt(self, *, subscriber: str, frequency: str, issued: datetime, error: str) -> None:
        """Record that this subscriber's digest could not be built, and why."""
        with self.engine.begin() as connection:
            connection.execute(
                _NEW_DIGEST,
                {
                    "subscriber": subscriber, "frequency": frequency, "since": None, "issued": issued,
                    "message_id": f"<unbuilt.{uuid.uuid4().hex}@syndicator.invalid>", "state": UNBUILT,
                    "attempts": 0, "error": error[:2000],
                },
            )  # fmt: skip

    def writes(self) -> LedgerWrites:
        """The per-message writes of a delivery, on one connection kept until it is closed."""
        return LedgerWrites(self.engine)

    # --- suppression list -------------------------------------------------------------------

    def suppress(self, subscriber: str, reason: str, now: datetime, detail: str | None = None) -> None:
        """Add an address to the suppression list (idempotent: the first reason stays)."""
        with self.engine.begin() as connection:
            _suppress(connection, subscriber=subscriber, reason=reason, now=now, detail=detail)

    def unsuppress(self, subscriber: str) -> None:
        """Lift the suppression of an address, kept readable or as its keyed hash."""
        forms = {subscriber} | Pseudonyms.of_store(self.store).every(subscriber)
        with self.engine.begin() as connection:
            connection.execute(delete(suppressions).where(suppressions.c.subscriber.in_(forms)))

    def suppressed(self) -> Suppressions[tuple[str, datetime]]:
        """Every suppressed address with its reason and since when; erased ones (kept as a keyed
        hash, syndicator/db/pseudonyms.py) are found by their address too."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(suppressions.c.subscriber, suppressions.c.reason, suppressions.c.since)
            )
            found = {row.subscriber: (row.reason, row.since) for row in rows}
        return Suppressions.of(self.store, found)


class LedgerWrites:
    """The writes each message of a delivery makes (taking its digest, confirming the outcome),
    each in its own transaction, on one connection kept from one write to the next: a
    connection from the pool for each write cost more than the write (bench/rss2email.py's
    0 ms target). A write that fails drops the connection; the next one takes a new connection,
    so that `retrying_here` can try it again once the database is back."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None

    def __enter__(self) -> LedgerWrites:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()

    def take(self, row: LedgerRow, claim: str) -> bool:
        """Take a digest for delivery under `claim`, the token that holds its subscriber; False
        when it is done, the claim ran out, or a live claim of another worker has it. One
        statement, the fence in it."""
        return self._write(_TAKE, {"t_id": row.id, "t_claim": claim, "t_at": datetime.now(UTC)})

    def sent(self, row: LedgerRow, now: datetime, claim: str) -> bool:
        """The transport accepted the digest: done, and its bytes are no longer kept. Refused
        (False) when `claim` no longer holds the row."""
        return self._write(_SENT, {"s_id": row.id, "s_claim": claim, "s_at": now})

    def failed(self, row: LedgerRow, error: str, *, final: bool, claim: str | None = None) -> bool:
        """Delivery failed: for good (`failed`), or to be tried again by a later run (`pending`)."""
        return self._confirm(
            row, claim, state="failed" if final else "pending", error=error[:2000], claimed_by=None
        )

    def _confirm(self, row: LedgerRow, claim: str | None, **values: Any) -> bool:
        """One outcome, only while `claim` holds the row."""
        where = [digests.c.id == row.id]
        if claim is not None:
            where.append(digests.c.claimed_by == claim)
        return self._write(update(digests).where(*where).values(**values), {})

    def _write(self, statement: Executable, values: dict[str, Any]) -> bool:
        """Run one statement in a transaction of its own; whether it changed a row."""
        connection = self._connection = self._connection or self._engine.connect()
        try:
            changed = connection.execute(statement, values).rowcount
            connection.commit()
        except BaseException:
            self.close()  # rolled back; a connection the error broke is thrown away
            raise
        return bool(changed)


class Suppressions(Mapping[str, _V]):
    """The suppressed addresses, each with what is known of it (reason and since, or a bounce
    record's whole entry), looked up by mailbox: an address unsubscribed in one form
    (`bob@xn--mairie-vry-h7a.fr`, as a sign-up stores it) is suppressed in the other
    (`bob@mairie-évry.fr`, as config.yaml may list it) too; an erased one, kept under its keyed
    hash, is found by its address."""

    def __init__(self, rows: Mapping[str, _V], hashes: Pseudonyms | None = None) -> None:
        self._rows = dict(rows)  # by the key each is filed under
        self._filed = {address if is_pseudonym(address) else mailbox(address): address for address in rows}
        self._hashes = hashes

    @classmethod
    def of(cls, store: Store, rows: Mapping[str, _V]) -> Suppressions[_V]:
        """These rows of the store's suppression list, with its keys when any row is hashed."""
        hashed = any(is_pseudonym(address) for address in rows)
        return cls(rows, Pseudonyms.of_store(store) if hashed else None)

    def filed_as(self, address: str) -> str | None:
        """The key the store files this address's suppression under; None when not suppressed."""
        filed = self._filed.get(mailbox(address))
        if filed is None and self._hashes is not None and not is_pseudonym(address):
            filed = next((h for h in self._hashes.every(address) if h in self._rows), None)
        return filed

    def __getitem__(self, address: str) -> _V:
        filed = self.filed_as(address)
        if filed is None:
            raise KeyError(address)
        return self._rows[filed]

    def __iter__(self) -> Iterator[str]:
        return iter(self._filed)

    def __len__(self) -> int:
        return len(self._filed)


def _insert(connection: Connection, new: NewDigest) -> LedgerRow:
    """A new digest's row and its items; the row as the database now holds it (and would give
    it back, dates and all)."""
    values = {
        "subscriber": new.subscriber, "frequency": new.frequency, "since": new.since,
        "issued": new.issued, "message_id": new.message_id, "message": new.message, "state": "pending",
        "attempts": 0,
    }  # fmt: skip
    inserted = connection.execute(_NEW_DIGEST, values).inserted_primary_key
    digest_id = int(inserted[0]) if inserted else 0
    _insert_items(connection, digest_id, new.subscriber, new.item_ids)
    return LedgerRow(
        id=digest_id, subscriber=new.subscriber, frequency=new.frequency,
        since=new.since and _as_stored(new.since), issued=_as_stored(new.issued),
        message_id=new.message_id, state="pending", message=new.message, attempts=0, error=None,
        sent_at=None,
    )  # fmt: skip


def _insert_items(connection: Connection, digest_id: int, subscriber: str, item_ids: Iterable[int]) -> None:
    """A row per item of a digest, in statements of up to `_ROWS` rows each, sent straight to
    the database driver. A digest may hold hundreds of items: SQLAlchemy's work for each row (or
    for compiling a multi-row INSERT of each new length) cost more than the rows, a tenth of a
    worker's time per digest (the scale-out target of bench/workers.py). Not the driver's
    executemany either: pysqlite runs it (and lets other threads run, then waits to get back)
    once per row, and psycopg pipelines it, so that a pair already recorded by a concurrent run
    (`Recorded.already`) also logs "error ignored terminating <psycopg.Pipeline>"."""
    values: list[Any] = []
    for item_id in item_ids:
        values += (digest_id, subscriber, item_id)
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    for start in range(0, len(values), _ROWS * 3):
        chunk = values[start : start + _ROWS * 3]
        connection.exec_driver_sql(_rows_statement(mark, len(chunk) // 3), tuple(chunk))


_ROWS = 100  # rows per INSERT: 300 parameters, under SQLite's oldest limit of 999


@lru_cache(maxsize=2 * _ROWS)
def _rows_statement(mark: str, count: int) -> str:
    """`INSERT INTO digest_items … VALUES (?, ?, ?), …` for `count` rows, with the driver's
    parameter mark."""
    row = f"({mark}, {mark}, {mark})"
    return f"INSERT INTO digest_items (digest_id, subscriber, item_id) VALUES {', '.join([row] * count)}"


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

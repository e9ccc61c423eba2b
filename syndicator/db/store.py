"""The database: items with their terms and attachments, the versions of the files read, feed state.

SQLAlchemy Core over a SQLite file by default (WAL, busy timeout), or PostgreSQL. The tables and
their migrations are in syndicator/db/schema.py; the delivery ledger's operations are in
syndicator/db/ledger.py.

Transactions are real on SQLite too: pysqlite's own transaction handling (which begins only at
the first INSERT, UPDATE or DELETE, so the reads before it are not isolated, and runs DDL
outside any transaction) is turned off, and SQLAlchemy's `begin` emits `BEGIN`, or
`BEGIN IMMEDIATE` for a transaction opened with `Store.writing()`: one that reads then writes
and must not be overtaken by another writer in between. Writes that may race with another
process's are single statements: `INSERT ... ON CONFLICT`, increments done by the database.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    Engine,
    Table,
    Text,
    bindparam,
    cast,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from syndicator.db.schema import (
    MIGRATIONS,
    Migration,
    attachments,
    feed_files,
    files,
    item_terms,
    items,
    schema_version,
    state,
    subscriber_choices,
    terms,
)
from syndicator.errors import StoreError
from syndicator.parsing.french_dates import DEFAULT_ZONE
from syndicator.parsing.items import VOCABULARIES, Attachment, NewsItem, Term, Vocabulary
from syndicator.taxonomy.terms import slugify, term_key


def content_hash(item: NewsItem) -> str:
    """A fingerprint of everything an item says, whichever file it came from."""
    data = item.to_json()
    del data["file"]
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredItem:
    """What the store knows of an item that ingest needs to decide about a new version."""

    url: str
    file: str
    file_key: str
    modified: datetime | None
    content_hash: str


@dataclass(frozen=True, slots=True)
class StoredTerm:
    """A term as the store keeps it: its name as items first spelt it, page URL and feed slug."""

    id: int
    vocabulary: Vocabulary
    name: str
    url: str | None
    slug: str | None


@dataclass(frozen=True, slots=True)
class ItemHeader:
    """What a feed needs to know of an item to place it, without loading its text."""

    id: int
    url: str
    content_hash: str
    published: date | None
    first_seen: datetime
    updated: datetime
    term_ids: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class FileVersion:
    """The size and modification time a file had when it was last read."""

    size: int
    mtime_ns: int


# The state key naming the zone the stored items' dates were read in.
ZONE_KEY = "items.zone"
# The dialects the store speaks: its upserts are written for these two.
DIALECTS = ("sqlite", "postgresql")
# The execution option that makes SQLite begin a transaction with BEGIN IMMEDIATE.
_IMMEDIATE = "syndicator_immediate"
# The PostgreSQL advisory lock that `Store.writing()` transactions take turns on ("SYNW"): any
# fixed number but the runner lock's (runlock.ADVISORY_KEY, "SYND"), which a runner holds while
# it writes.
_WRITING_LOCK = 0x53594E57


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # SQLAlchemy's pysqlite recipe: the driver emits no BEGIN of its own, `_sqlite_begin` does.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA busy_timeout=30000")
    _write_ahead_log(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _write_ahead_log(cursor: Any, *, tries: int = 200) -> None:
    """Put the file in WAL mode (kept by the file once set). Commands opening a new file at once
    race to switch it, and SQLite refuses the losers at once ("database is locked", without
    waiting for the busy timeout): they try again (for up to about 10 s) and find it done."""
    for attempt in range(tries):
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or attempt == tries - 1:
                raise
            time.sleep(0.05)


def _sqlite_begin(connection: Connection) -> None:
    # IMMEDIATE takes the write lock now (waiting up to the busy timeout), not at the first
    # write: a deferred transaction that read, then finds another writer came first, fails at
    # once with "database is locked" rather than waiting, as its snapshot is stale.
    immediate = connection.get_execution_options().get(_IMMEDIATE, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def upsert(connection: Connection, table: Table) -> Any:
    """An `INSERT` into `table` that takes `.on_conflict_do_update()` and
    `.on_conflict_do_nothing()`, in the connection's dialect."""
    if connection.dialect.name == "postgresql":
        # Imported here: the dialect costs 40 ms that `syndicator status` on SQLite (≤ 0.6 s) need not pay.
        from sqlalchemy.dialects import postgresql  # noqa: PLC0415

        return postgresql.insert(table)
    return sqlite.insert(table)


def _create_private(database: str | None, *, uri: bool) -> None:
    """Create a new SQLite file readable by its owner only, whatever the umask: it holds every
    address and may hold the links' secret. SQLite gives its -wal and -shm files the same mode."""
    if not database or database == ":memory:" or uri:
        return
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except OSError:
        return  # already there; or SQLite says why when it opens it (no such folder, no permission)


class Store:
    """The database behind every command. Open with `Store.open(url)`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._term_ids: dict[tuple[str, str], int] = {}
        self._headers: dict[int, ItemHeader] = {}  # item_headers() between calls, by item id
        self._headers_generation: str | None = None  # items.generation when _headers was checked

    @classmethod
    def open(cls, url: str, migrations: Sequence[Migration] = MIGRATIONS) -> Store:
        """Connect, and bring the schema to the current version: `migrations` all applied, in
        one transaction (a failure leaves the database at the version it had)."""
        try:
            backend = make_url(url).get_backend_name()
            if backend not in DIALECTS:
                raise StoreError(
                    f"cannot use database {url!r}: the store speaks SQLite and PostgreSQL, not {backend}",
                    path="config.yaml",
                )
            engine = create_engine(url)
        except (SQLAlchemyError, ValueError, ImportError) as exc:
            raise StoreError(f"cannot use database {url!r}: {exc}", path="config.yaml") from None
        if engine.dialect.name == "sqlite":
            _create_private(engine.url.database, uri=bool(engine.url.query.get("uri")))
            event.listen(engine, "connect", _sqlite_connect)
            event.listen(engine, "begin", _sqlite_begin)
        store = cls(engine)
        try:
            store._migrate(migrations)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open database {url!r}: {exc.__class__.__name__}: {exc}") from None
        return store

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def writing(self) -> Iterator[Connection]:
        """A transaction that reads then writes, committed at the end of the block. On SQLite it
        holds the write lock from its first statement, so no other writer comes in between; on
        PostgreSQL the transactions opened here take turns (an advisory lock held until commit).
        Never open one inside another: the inner one would wait for the outer one."""
        with self.engine.execution_options(**{_IMMEDIATE: True}).begin() as connection:
            if connection.dialect.name == "postgresql":
                # PostgreSQL's equivalent: these transactions take turns, released at commit.
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _WRITING_LOCK})
            yield connection

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        with self.writing() as connection:
            # Two processes opening a new database: the second waits (`writing`), then finds it done.
            schema_version.create(connection, checkfirst=True)
            current = connection.execute(select(func.max(schema_version.c.version))).scalar() or 0
            if current > len(migrations):
                raise StoreError(
                    f"the database is at schema version {current}, newer than this syndicator "
                    f"({len(migrations)}); upgrade syndicator"
                )
            for version in range(current + 1, len(migrations) + 1):
                migrations[version - 1](connection)
                connection.execute(insert(schema_version).values(version=version))

    @property
    def version(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(select(func.max(schema_version.c.version))).scalar() or 0

    # --- files -----------------------------------------------------------------------------

    def file_versions(self) -> dict[str, FileVersion]:
        """Every file read so far, by absolute path."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(files.c.path, files.c.size, files.c.mtime_ns))
            return {path: FileVersion(size, mtime) for path, size, mtime in rows}

    def read_in(self, zone: str) -> bool:
        """Record that the item files are read in `zone` (the site's), and when the stored items
        were read in another (Europe/Paris before this was recorded), forget every file read: their
        dates are local times, so each file is read again by the next ingest that sees it. True
        when they were forgotten."""
        with self.engine.connect() as connection:
            if (self._get_state(connection, ZONE_KEY) or DEFAULT_ZONE.key) == zone:
                return False
        with self.writing() as connection:
            if (self._get_state(connection, ZONE_KEY) or DEFAULT_ZONE.key) == zone:
                return False  # another ingest did it meanwhile
            connection.execute(delete(files))
            self._set_state(connection, ZONE_KEY, zone)
            return True

    # --- items -----------------------------------------------------------------------------

    def stored(self, urls: Iterable[str]) -> dict[str, StoredItem]:
        """What the store holds for these URLs."""
        wanted = list(set(urls))
        found: dict[str, StoredItem] = {}
        columns = (items.c.url, items.c.file, items.c.file_key, items.c.modified, items.c.content_hash)
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), 500):
                rows = connection.execute(
                    select(*columns).where(items.c.url.in_(wanted[start : start + 500]))
                )
                for row in rows:
                    found[row.url] = StoredItem(*row)
        return found

    def save(
        self,
        changed: Sequence[tuple[NewsItem, str, str]],
        versions: Sequence[tuple[str, FileVersion, str | None]],
        forget: Sequence[str],
        now: datetime,
    ) -> None:
        """In one transaction: upsert items given as (item, file key, hash), record file versions
        as (file key, version, url), and forget the versions of files that failed to parse.

        An item whose hash is the stored one only moves to its new file; `last_changed` moves
        only when the content did."""
        # The last version of a URL wins: ingest lists a duplicate's winner after its loser.
        latest = {item.url: (item, key, hashed) for item, key, hashed in changed}
        new_terms: dict[tuple[str, str], int] = {}
        with self.writing() as connection:
            if latest:
                self._save_items(connection, list(latest.values()), now, new_terms)
                self._bump(connection, "items.generation")
            gone = [*forget, *(key for key, _, _ in versions)]
            for start in range(0, len(gone), 500):
                connection.execute(delete(files).where(files.c.path.in_(gone[start : start + 500])))
            if versions:
                connection.execute(
                    insert(files),
                    [{"path": k, "size": s.size, "mtime_ns": s.mtime_ns, "url": u} for k, s, u in versions],
                )
        # Known to other threads only once committed: a rolled-back id would name no row.
        self._term_ids.update(new_terms)

    def save_each(
        self,
        changed: Sequence[tuple[NewsItem, str, str]],
        versions: Sequence[tuple[str, FileVersion, str | None]],
        forget: Sequence[str],
        now: datetime,
    ) -> dict[str, str]:
        """As `save`, but a transaction per file, so that a file whose row the database refuses
        (a constraint, a value beyond what the server accepts) is rolled back alone. Returns the
        refused file keys with the database's reason; their versions are forgotten, so they are
        read again next time. Slower: for a chunk that `save` failed to store."""
        entries = {key: (item, key, hashed) for item, key, hashed in changed}
        refused: dict[str, str] = {}
        self.save([], [], forget, now)
        for key, version, url in versions:
            entry = entries.get(key)
            try:
                self.save([entry] if entry else [], [(key, version, url)], [], now)
            except DBAPIError as exc:
                refused[key] = " ".join(str(exc.orig).split())[:300]
        if refused:
            self.save([], [], list(refused), now)
        return refused

    def _term_id(self, connection: Connection, term: Term, new_terms: dict[tuple[str, str], int]) -> int:
        """The id of a term, inserted if new (first spelling wins), its page URL filled in if it
        had none. One statement: two processes adding the same term both get its one row."""
        key = (term.vocabulary, term_key(term.name))
        found = self._term_ids.get(key) or new_terms.get(key)
        if found is not None:
            return found
        statement = upsert(connection, terms).values(
            vocabulary=key[0], key=key[1], name=term.name, url=term.url
        )
        statement = statement.on_conflict_do_update(
            index_elements=[terms.c.vocabulary, terms.c.key],
            set_={"url": func.coalesce(terms.c.url, statement.excluded.url)},
        ).returning(terms.c.id)
        term_id = int(connection.execute(statement).scalar_one())
        new_terms[key] = term_id
        return term_id

    def _save_items(
        self,
        connection: Connection,
        changed: Sequence[tuple[NewsItem, str, str]],
        now: datetime,
        new_terms: dict[tuple[str, str], int],
    ) -> None:
        """Bulk upsert: one statement per table and kind of change, not one per item."""
        if not changed:
            return
        existing: dict[str, tuple[int, str]] = {}
        urls = [item.url for item, _, _ in changed]
        for start in range(0, len(urls), 500):
            query = select(items.c.url, items.c.id, items.c.content_hash).where(
                items.c.url.in_(urls[start : start + 500])
            )
            existing.update({row.url: (row.id, row.content_hash) for row in connection.execute(query)})
        moved, new, updated = [], [], []
        for item, file_key, hashed in changed:
            known = existing.get(item.url)
            if known is not None and known[1] == hashed:
                moved.append({"b_id": known[0], "file": item.file, "file_key": file_key})
                continue
            values = self._columns(connection, item, file_key, hashed, now, new_terms=new_terms)
            if known is None:
                new.append((item, {"url": item.url, "first_seen": now, **values}))
            else:
                updated.append((item, {"b_id": known[0], **values}))
        if moved:
            connection.execute(
                update(items).where(items.c.id == bindparam("b_id")),
                moved,
            )
        ids: list[tuple[int, NewsItem]] = []
        if new:
            # A plain executemany, then the ids by URL: RETURNING would cost a statement per row.
            connection.execute(insert(items), [values for _, values in new])
            new_ids = self._ids(connection, [item.url for item, _ in new])
            ids += [(new_ids[item.url], item) for item, _ in new]
        if updated:
            connection.execute(
                update(items).where(items.c.id == bindparam("b_id")),
                [values for _, values in updated],
            )
            stale = [values["b_id"] for _, values in updated]
            for start in range(0, len(stale), 500):
                batch = stale[start : start + 500]
                connection.execute(delete(item_terms).where(item_terms.c.item_id.in_(batch)))
                connection.execute(delete(attachments).where(attachments.c.item_id.in_(batch)))
            ids += [(values["b_id"], item) for item, values in updated]
        links, files_ = [], []
        for item_id, item in ids:
            seen: set[int] = set()
            for position, term in enumerate(item.thematiques + item.territoires):
                term_id = self._term_id(connection, term, new_terms)
                if term_id not in seen:
                    seen.add(term_id)
                    links.append({"item_id": item_id, "term_id": term_id, "position": position})
            files_ += [
                {"item_id": item_id, "position": p, "url": a.url, "size_bytes": a.size_bytes,
                 "mime_type": a.mime_type}
                for p, a in enumerate(item.attachments)
            ]  # fmt: skip
        if links:
            connection.execute(insert(item_terms), links)
        if files_:
            connection.execute(insert(attachments), files_)

    @staticmethod
    def _ids(connection: Connection, urls: Sequence[str]) -> dict[str, int]:
        found: dict[str, int] = {}
        for start in range(0, len(urls), 500):
            query = select(items.c.url, items.c.id).where(items.c.url.in_(urls[start : start + 500]))
            found.update({row.url: row.id for row in connection.execute(query)})
        return found

    def _columns(
        self,
        connection: Connection,
        item: NewsItem,
        file_key: str,
        hashed: str,
        now: datetime,
        *,
        new_terms: dict[tuple[str, str], int],
    ) -> dict[str, Any]:
        return {
            "file": item.file,
            "file_key": file_key,
            "title": item.title,
            "type_id": self._term_id(connection, item.type, new_terms) if item.type else None,
            "published": item.published,
            "modified": item.modified,
            "event_start": item.event_start,
            "event_end": item.event_end,
            "summary": item.summary,
            "body_html": item.body_html,
            "content_hash": hashed,
            "last_changed": now,
        }

    def count_items(self) -> int:
        with self.engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(items)).scalar() or 0

    def items(self) -> Iterator[NewsItem]:
        """Every stored item as a `NewsItem`, newest publication first, then by URL."""
        yield from self._items(None)

    def items_by_id(self, ids: Iterable[int]) -> dict[int, NewsItem]:
        """The stored items with these ids."""
        wanted = sorted(set(ids))
        found: dict[int, NewsItem] = {}
        for start in range(0, len(wanted), 500):
            found.update(self._items(wanted[start : start + 500], with_ids=True))
        return found

    def _items(self, ids: Sequence[int] | None, *, with_ids: bool = False) -> Iterator[Any]:
        with self.engine.connect() as connection:
            by_id = {t.id: Term(t.vocabulary, t.name, t.url) for t in self._terms(connection).values()}
            link_query, file_query = select(item_terms), select(attachments)
            item_query = select(items).order_by(items.c.published.desc(), items.c.url)
            if ids is not None:
                link_query = link_query.where(item_terms.c.item_id.in_(ids))
                file_query = file_query.where(attachments.c.item_id.in_(ids))
                item_query = item_query.where(items.c.id.in_(ids))
            links: dict[int, list[tuple[int, int]]] = {}
            for item_id, term_id, position in connection.execute(link_query):
                links.setdefault(item_id, []).append((position, term_id))
            files_of: dict[int, list[tuple[int, Attachment]]] = {}
            for row in connection.execute(file_query):
                files_of.setdefault(row.item_id, []).append(
                    (row.position, Attachment(row.url, row.size_bytes, row.mime_type))
                )
            for row in connection.execute(item_query):
                item_terms_ = [by_id[t] for _, t in sorted(links.get(row.id, []))]
                item = NewsItem(
                    url=row.url,
                    file=row.file,
                    title=row.title,
                    type=by_id.get(row.type_id) if row.type_id else None,
                    thematiques=tuple(t for t in item_terms_ if t.vocabulary == "thematiques"),
                    territoires=tuple(t for t in item_terms_ if t.vocabulary == "territoires"),
                    published=row.published,
                    modified=row.modified,
                    event_start=row.event_start,
                    event_end=row.event_end,
                    attachments=tuple(a for _, a in sorted(files_of.get(row.id, []), key=lambda x: x[0])),
                    summary=row.summary,
                    body_html=row.body_html,
                )
                yield (row.id, item) if with_ids else item

    # --- what feeds are built from ---------------------------------------------------------

    @staticmethod
    def _terms(connection: Connection) -> dict[int, StoredTerm]:
        rows = connection.execute(
            select(terms.c.id, terms.c.vocabulary, terms.c.name, terms.c.url, terms.c.slug)
        )
        return {
            row.id: StoredTerm(row.id, _vocabulary(row.vocabulary), row.name, row.url, row.slug)
            for row in rows
        }

    def terms(self) -> dict[int, StoredTerm]:
        """Every term, by id."""
        with self.engine.connect() as connection:
            return self._terms(connection)

    def item_headers(self) -> list[ItemHeader]:
        """Every item, light: ids, hash, dates and the ids of its terms (type included).

        Kept between calls: a long-lived store (the daemon's) reads again only the items added
        or changed since (a changed item has a new content hash, which covers its dates and
        terms), so a refresh after one new item does not convert every row's dates again."""
        with self.engine.connect() as connection:
            generation = self._get_state(connection, "items.generation")
            if self._headers and generation == self._headers_generation:
                return list(self._headers.values())
            self._headers_generation = generation
            if not self._headers:
                self._headers = {header.id: header for header in self._load_headers(connection, None)}
                return list(self._headers.values())
            hashes = connection.execute(select(items.c.id, items.c.content_hash))
            stale = [
                i for i, h in hashes if (known := self._headers.get(i)) is None or known.content_hash != h
            ]
            for start in range(0, len(stale), 500):
                for header in self._load_headers(connection, stale[start : start + 500]):
                    self._headers[header.id] = header
            return list(self._headers.values())

    @staticmethod
    def _load_headers(connection: Connection, ids: Sequence[int] | None) -> list[ItemHeader]:
        links: dict[int, list[int]] = {}
        query = select(item_terms.c.item_id, item_terms.c.term_id)
        if ids is not None:
            query = query.where(item_terms.c.item_id.in_(ids))
        for item_id, term_id in connection.execute(query):
            links.setdefault(item_id, []).append(term_id)
        columns = (
            items.c.id, items.c.url, items.c.content_hash, items.c.published, items.c.first_seen,
            items.c.modified, items.c.last_changed, items.c.type_id,
        )  # fmt: skip
        rows = select(*columns) if ids is None else select(*columns).where(items.c.id.in_(ids))
        return [
            ItemHeader(
                row.id,
                row.url,
                row.content_hash,
                row.published,
                row.first_seen,
                row.modified or row.last_changed,
                ((row.type_id,) if row.type_id else ()) + tuple(links.get(row.id, ())),
            )
            for row in connection.execute(rows)
        ]

    def items_version(self) -> str:
        """A value that changes whenever items are added or changed: a counter the writes bump."""
        with self.engine.connect() as connection:
            return self._get_state(connection, "items.generation") or "0"

    def assign_slugs(self, term_ids: Iterable[int]) -> dict[int, str]:
        """Give each of these terms a feed slug if it has none, unique in its vocabulary, and
        return the slugs of all of them. A clash takes a numbered suffix, kept from then on."""
        with self.writing() as connection:
            known = self._terms(connection)
            taken = {(t.vocabulary, t.slug) for t in known.values() if t.slug}
            slugs: dict[int, str] = {}
            for term_id in sorted(set(term_ids)):
                term = known[term_id]
                if term.slug:
                    slugs[term_id] = term.slug
                    continue
                base = slugify(term.name)[:150] or "terme"
                slug, number = base, 2
                while (term.vocabulary, slug) in taken:
                    slug, number = f"{base}-{number}", number + 1
                taken.add((term.vocabulary, slug))
                connection.execute(update(terms).where(terms.c.id == term_id).values(slug=slug))
                slugs[term_id] = slug
            return slugs

    def feed_signatures(self) -> dict[str, str]:
        """The feed files written so far, with the signature of what each was built from."""
        with self.engine.connect() as connection:
            return {row.path: row.signature for row in connection.execute(select(feed_files))}

    def record_feeds(self, signatures: dict[str, str], removed: Iterable[str], built_from: str) -> None:
        """Remember the feed files now on disk, and what they were built from (items and settings)."""
        with self.engine.begin() as connection:
            gone = list(removed) + list(signatures)
            for start in range(0, len(gone), 500):
                connection.execute(delete(feed_files).where(feed_files.c.path.in_(gone[start : start + 500])))
            if signatures:
                connection.execute(
                    insert(feed_files), [{"path": p, "signature": s} for p, s in signatures.items()]
                )
            self._set_state(connection, "feeds.stamp", built_from)

    def choices_version(self) -> str:
        """A value that changes whenever subscribers' own choices (web) change."""
        with self.engine.connect() as connection:
            count, latest = connection.execute(
                select(func.count(), func.max(subscriber_choices.c.updated))
            ).one()
            return f"{count}:{latest}"

    def get_state(self, key: str) -> str | None:
        with self.engine.connect() as connection:
            return self._get_state(connection, key)

    def set_state(self, key: str, value: str) -> None:
        with self.engine.begin() as connection:
            self._set_state(connection, key, value)

    def swap_state(self, key: str, old: str | None, new: str | None) -> bool:
        """Set `key` to `new` (None: remove it) only if it still holds `old` (None: absent), in
        one transaction; False when another writer changed it first."""
        with self.writing() as connection:
            if old is None and new is not None:
                # RETURNING, not the row count: psycopg gives -1 for an INSERT ... ON CONFLICT.
                inserted = connection.execute(
                    upsert(connection, state)
                    .values(key=key, value=new)
                    .on_conflict_do_nothing()
                    .returning(state.c.key)
                )
                return inserted.first() is not None
            if old is None:
                return self._get_state(connection, key) is None
            matching = (state.c.key == key) & (state.c.value == old)
            if new is None:
                return connection.execute(delete(state).where(matching)).rowcount == 1
            return connection.execute(update(state).where(matching).values(value=new)).rowcount == 1

    def ensure_state(self, key: str, make: Callable[[], str]) -> str:
        """The value of `key`, set to `make()` first if it has none. The first writer wins: two
        processes starting on a new store (`run` and `serve`) may both find none, and the one
        whose write comes second reads the other's value."""
        with self.engine.connect() as connection:
            value = self._get_state(connection, key)
        if value is not None:
            return value
        made = make()  # outside any transaction: it may take its time, or write itself
        with self.engine.begin() as connection:
            connection.execute(upsert(connection, state).values(key=key, value=made).on_conflict_do_nothing())
            value = self._get_state(connection, key)
        if value is None:  # removed again at once, by swap_state: a new value then
            return self.ensure_state(key, make)
        return value

    @staticmethod
    def _get_state(connection: Connection, key: str) -> str | None:
        value: str | None = connection.execute(select(state.c.value).where(state.c.key == key)).scalar()
        return value

    @staticmethod
    def _set_state(connection: Connection, key: str, value: str) -> None:
        statement = upsert(connection, state).values(key=key, value=value)
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=[state.c.key], set_={"value": statement.excluded.value}
            )
        )

    @staticmethod
    def _bump(connection: Connection, key: str) -> None:
        """Add one to a counter kept in `state` (absent: 0), in the database, so that two
        writers at once never both write the same next value."""
        statement = upsert(connection, state).values(key=key, value="1")
        connection.execute(
            statement.on_conflict_do_update(
                index_elements=[state.c.key],
                set_={"value": cast(cast(state.c.value, BigInteger) + 1, Text)},
            )
        )


def _vocabulary(name: str) -> Vocabulary:
    for vocabulary in VOCABULARIES:
        if vocabulary == name:
            return vocabulary
    raise StoreError(f"unknown vocabulary {name!r} in the terms table")

"""The store under concurrency: many writers at once on one database, each a thread with its
own connections (as processes would be), and migrations that are one transaction.

The database comes from the `database_url` fixture: a new SQLite file here; a fixture that
gives a new PostgreSQL database runs the same tests there."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, func, insert, inspect, select

from syndicator.config.frequencies import FREQUENCIES
from syndicator.config.subscribers import Subscriber
from syndicator.db.choices import Consent, load_choice, load_choices, save_choice
from syndicator.db.schema import MIGRATIONS, item_terms, schema_version, state, terms
from syndicator.db.signups import Limit, Limits, RateLimited, create_request
from syndicator.db.store import FileVersion, Store, content_hash
from syndicator.errors import StoreError
from syndicator.parsing.items import NewsItem, Term

from .conftest import Run

THREADS = 6
NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def stores(database_url: str) -> Iterator[list[Store]]:
    """One store per thread, on the same database, each with its own connection pool."""
    opened = [Store.open(database_url) for _ in range(THREADS)]
    yield opened
    for store in opened:
        store.close()


def together(work: Callable[[int], None], count: int = THREADS) -> None:
    """Run `work(0..count-1)` in as many threads, released at the same moment; re-raise the
    first error any of them met."""
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(number: int) -> None:
        try:
            start.wait()
            work(number)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def news(url: str, *thematiques: str) -> NewsItem:
    """An item tagged with these thématiques, a type and a territoire."""
    return NewsItem(
        url=url,
        file=f"/items/{url.rsplit('/', 1)[-1]}.txt",
        title="Une actualité",
        type=Term("types", "Actualité", "https://www.irev.fr/taxonomy/term/1"),
        thematiques=tuple(Term("thematiques", name, None) for name in thematiques),
        territoires=(Term("territoires", "Nord", "https://www.irev.fr/taxonomy/term/2"),),
        published=date(2026, 11, 30),
        summary="Résumé.",
        body_html="<p>Résumé.</p>",
    )


def save(store: Store, item: NewsItem) -> None:
    key = item.file
    store.save([(item, key, content_hash(item))], [(key, FileVersion(1, 1), item.url)], [], NOW)


def test_state_set_by_many_writers_at_once_keeps_each_last_value(stores: list[Store]) -> None:
    """Threads setting the same keys hundreds of times at once meet no error, and each key
    ends holding a value its last writer wrote (a delete then an insert made PostgreSQL refuse
    a concurrent insert of the same key)."""

    def work(number: int) -> None:
        for turn in range(300):
            stores[number].set_state("shared", f"{number}:{turn}")
            stores[number].set_state(f"own.{number}", str(turn))

    together(work)
    reader = stores[0]
    assert reader.get_state("shared") in {f"{n}:299" for n in range(THREADS)}
    assert [reader.get_state(f"own.{n}") for n in range(THREADS)] == ["299"] * THREADS


def test_choices_saved_at_once_for_one_address_leave_one_row(stores: list[Store]) -> None:
    """Web workers saving a new subscriber's preferences at once, many times over: no error
    (an update, then an insert when it found no row, made PostgreSQL refuse all but the first
    insert), one row holding one whole choice (not a mix), and a stored consent is kept."""

    def work(number: int) -> None:
        frequency = FREQUENCIES[number % 4]
        for turn in range(100):
            chosen = Subscriber("Marie@example.org", f"Marie {number}", frequency, (f"T{number}-{turn}",))
            save_choice(stores[number], chosen, now=NOW)

    together(work)
    choices = load_choices(stores[0])
    assert list(choices) == ["marie@example.org"]
    chosen = choices["marie@example.org"].subscriber
    number = int(chosen.name.split()[-1]) if chosen.name else -1
    assert chosen.thematiques == (f"T{number}-99",)
    assert chosen.frequency == FREQUENCIES[number % 4]
    consent = Consent(at=NOW, ip="192.0.2.1", wording="2026-01")
    save_choice(stores[1], chosen, now=NOW, consent=consent)
    save_choice(stores[2], replace(chosen, frequency="daily"), now=NOW)
    stored = load_choice(stores[0], "marie@example.org")
    assert stored is not None
    assert (stored.subscriber.frequency, stored.consent) == ("daily", consent)


def test_a_new_term_saved_by_many_writers_at_once_is_one_term(stores: list[Store]) -> None:
    """Writers storing items that name the same new terms at the same moment all succeed; each
    term has one row, however each spelt it, and every item is linked to it."""
    spellings = ("Santé", "sante", "SANTÉ", "Santé", "santé", "Sante")

    def work(number: int) -> None:
        for turn in range(10):
            url = f"https://www.irev.fr/actualites/item-{number}-{turn}"
            save(stores[number], news(url, spellings[number], f"Thème {turn}"))

    together(work)
    with stores[0].engine.connect() as connection:
        rows = connection.execute(select(terms.c.vocabulary, terms.c.key, terms.c.url)).all()
        links = connection.execute(
            select(terms.c.key, func.count()).join(item_terms).group_by(terms.c.key)
        ).all()
    keys = [(vocabulary, key) for vocabulary, key, _ in rows]
    assert len(keys) == len(set(keys)) == 1 + 1 + 1 + 10  # type, territoire, santé, 10 thèmes
    assert {key: int(count) for key, count in links}["sante"] == THREADS * 10
    assert all(url for vocabulary, _, url in rows if vocabulary != "thematiques")


def test_a_term_first_seen_without_page_gets_the_page_a_later_item_gives(database_url: str) -> None:
    """A term stored without its page URL takes the first URL an item gives later, and keeps it."""
    first, second = Store.open(database_url), Store.open(database_url)
    save(first, news("https://www.irev.fr/actualites/a", "Santé"))
    with_page = Term("thematiques", "sante", "https://www.irev.fr/taxonomy/term/3")
    save(second, replace(news("https://www.irev.fr/actualites/b"), thematiques=(with_page,)))
    other_page = Term("thematiques", "Santé", "https://www.irev.fr/taxonomy/term/4")
    save(second, replace(news("https://www.irev.fr/actualites/c"), thematiques=(other_page,)))
    found = {t.name: t.url for t in first.terms().values() if t.vocabulary == "thematiques"}
    assert found == {"Santé": "https://www.irev.fr/taxonomy/term/3"}
    first.close()
    second.close()


def test_every_save_at_once_moves_the_change_stamp(stores: list[Store]) -> None:
    """The counter that tells feeds the items changed is incremented by the database: saves
    made at the same moment by many writers each count."""
    before = int(stores[0].items_version())

    def work(number: int) -> None:
        for turn in range(10):
            save(stores[number], news(f"https://www.irev.fr/actualites/g-{number}-{turn}", "Santé"))

    together(work)
    assert int(stores[0].items_version()) == before + THREADS * 10


def test_a_read_then_write_transaction_is_not_overtaken(stores: list[Store]) -> None:
    """Within `Store.writing()`, what was read is still true when the write lands: counters
    incremented by reading then writing, from many writers at once, lose no increment."""

    def work(number: int) -> None:
        for _ in range(50):
            with stores[number].writing() as connection:
                value = connection.execute(select(state.c.value).where(state.c.key == "n")).scalar()
                stores[number]._set_state(connection, "n", str(int(value or 0) + 1))

    together(work)
    assert stores[0].get_state("n") == str(THREADS * 50)


def test_the_first_value_ensured_at_once_is_everyones(stores: list[Store]) -> None:
    """Processes starting together on a new store each make a secret: all of them use the one
    that was stored first."""
    found: list[str] = [""] * THREADS

    def work(number: int) -> None:
        found[number] = stores[number].ensure_state("secret", lambda: f"secret-{number}")

    together(work)
    assert len(set(found)) == 1
    assert stores[0].get_state("secret") == found[0]


def test_of_writers_taking_a_free_key_at_once_exactly_one_wins(stores: list[Store]) -> None:
    """`swap_state` from absent (how a runner takes its lock) succeeds for exactly one of the
    writers trying at the same moment, and the key holds the winner's value."""
    won: list[int] = []

    def work(number: int) -> None:
        if stores[number].swap_state("lock", None, f"runner {number}"):
            won.append(number)

    together(work)
    assert len(won) == 1
    assert stores[0].get_state("lock") == f"runner {won[0]}"
    assert not stores[0].swap_state("lock", None, "late")
    assert stores[0].swap_state("lock", f"runner {won[0]}", None)
    assert stores[0].get_state("lock") is None


def test_processes_opening_a_new_database_at_once_all_find_it_ready(database_url: str) -> None:
    """Several commands started at once on a database that does not exist yet: one creates the
    schema, the others wait and find it done; each ends at the current version."""
    opened: list[Store] = []

    def work(_number: int) -> None:
        opened.append(Store.open(database_url))

    together(work)
    try:
        assert [store.version for store in opened] == [len(MIGRATIONS)] * THREADS
        with opened[0].engine.connect() as connection:
            assert connection.execute(select(func.count()).select_from(schema_version)).scalar() == len(
                MIGRATIONS
            )
    finally:
        for store in opened:
            store.close()


def _creates_a_table_then_fails(connection: Connection) -> None:
    connection.exec_driver_sql("CREATE TABLE half_done (id INTEGER PRIMARY KEY)")
    connection.execute(insert(state).values(key="half", value="done"))
    raise RuntimeError("this migration fails half-way")


def test_a_migration_failing_half_way_leaves_the_database_at_its_old_version(database_url: str) -> None:
    """An upgrade from version 1 whose last step fails after it created a table: nothing of the
    upgrade stays, neither the tables of the steps before it nor its own, and the version is
    still 1; the next opening with the good migrations upgrades it whole."""
    Store.open(database_url, MIGRATIONS[:1]).close()
    with pytest.raises(RuntimeError, match="half-way"):
        Store.open(database_url, (*MIGRATIONS, _creates_a_table_then_fails))
    store = Store.open(database_url, MIGRATIONS[:1])
    try:
        assert store.version == 1
        tables = set(inspect(store.engine).get_table_names())
        assert "half_done" not in tables
        assert "subscriber_choices" not in tables  # made by version 2, rolled back with the rest
        assert store.get_state("half") is None
    finally:
        store.close()
    with Store.open(database_url) as upgraded:
        assert upgraded.version == len(MIGRATIONS)
        assert "subscriber_choices" in inspect(upgraded.engine).get_table_names()


def test_a_database_other_than_sqlite_or_postgresql_is_refused_by_name(run: Run, project: Path) -> None:
    """A `database:` URL of a kind the store does not speak (its upserts are written for SQLite
    and PostgreSQL) is refused at once, naming it: by `check` at its line with what to use, and
    by opening the store."""
    config = project / "config.yaml"
    text = config.read_text(encoding="utf-8")
    rows = text.splitlines()
    line = next(n for n, row in enumerate(rows, 1) if row.startswith("database:"))
    rows[line - 1] = "database: mysql://user@localhost/syndicator"  # whichever database the run uses
    config.write_text("\n".join(rows) + "\n", encoding="utf-8")
    checked = run("check")
    assert checked.code == 1
    assert checked.err.splitlines() == [
        f"config.yaml:{line}: database: mysql is not a database syndicator can use: SQLite or PostgreSQL",
        "hint: use sqlite:///syndicator.db, or postgresql+psycopg://user@host/name",
    ]
    assert run("ingest").code == 1
    with pytest.raises(StoreError, match="SQLite and PostgreSQL, not mysql"):
        Store.open("mysql://user@localhost/syndicator")


@pytest.mark.sqlite_only
@pytest.mark.parametrize("kind", ["reading", "writing"])
def test_sqlite_transactions_begin_at_their_first_statement(tmp_path: Path, kind: str) -> None:
    """On SQLite, what a transaction read stays what it sees until it ends (pysqlite's own
    handling began a transaction only at the first write, so two reads could disagree)."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with Store.open(url) as store:
        store.set_state("k", "before")
        opened = store.writing() if kind == "writing" else store.engine.connect()
        with opened as connection:
            first = connection.execute(select(state.c.value).where(state.c.key == "k")).scalar()
            if kind == "reading":
                with sqlite3.connect(tmp_path / "store.db", timeout=0) as other:
                    other.execute("UPDATE state SET value = 'after' WHERE key = 'k'")
            else:  # the write lock is held: another writer cannot come in between
                with (
                    pytest.raises(sqlite3.OperationalError, match="locked"),
                    sqlite3.connect(tmp_path / "store.db", timeout=0) as other,
                ):
                    other.execute("UPDATE state SET value = 'after' WHERE key = 'k'")
            second = connection.execute(select(state.c.value).where(state.c.key == "k")).scalar()
        assert first == second == "before"


def test_sign_ups_from_one_address_at_once_stop_at_the_limit(stores: list[Store]) -> None:
    """Sign-up requests from one IP arriving at the same moment on several web workers are
    counted against each other: exactly the limit goes through, the others are refused."""
    limits = Limits(ip=Limit(3, timedelta(hours=1)))
    accepted: list[int] = []

    def work(number: int) -> None:
        try:
            create_request(
                stores[number], Subscriber(f"agent{number}@example.org"), ip="192.0.2.7",
                wording="2026-01", now=NOW, limits=limits,
            )  # fmt: skip
        except RateLimited:
            return
        accepted.append(number)

    together(work)
    assert len(accepted) == 3

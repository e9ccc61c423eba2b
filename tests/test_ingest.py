"""Ingest into a real store (a SQLite file, or PostgreSQL in that run): new, updated, unchanged,
broken and duplicate files."""

from __future__ import annotations

import os
import shutil
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from syndicator.db.schema import MIGRATIONS
from syndicator.db.store import Store
from syndicator.ingest.reading import ingest

from .databases import database_for
from .support import ITEMS, SEED, item_text, numbered_items

T0 = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(database_for(tmp_path, "store.db"))


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    target = tmp_path / "items"
    shutil.copytree(ITEMS, target)
    return target


def test_first_ingest_stores_every_sample(store: Store, folder: Path) -> None:
    """Every sample lands in the store with its terms and attachments."""
    report = ingest(store, [folder], now=T0)
    count = len(list(folder.glob("*.txt")))
    assert (report.new, report.updated, report.unchanged, report.errors) == (count, 0, 0, [])
    stored = {item.url: item for item in store.items()}
    assert len(stored) == count
    seed = stored[
        "https://www.irev.fr/actualites-0/lassemblee-generale-du-gip-irev-adopte-le-programme-dactions-2022"
    ]
    assert seed.attachments[0].size_bytes == 1887437
    assert [t.name for t in seed.thematiques] == ["Politique de la ville - DSU"]
    # "modifié le 30/11/2021 - 11:29", Paris time (the shipped config's zone); stored in UTC.
    assert seed.modified == datetime(2021, 11, 30, 10, 29, tzinfo=UTC)


def test_stored_items_round_trip_to_the_parsed_ones(store: Store, folder: Path) -> None:
    """What comes out of the store is what the parser gave, field for field (dates as the same
    instants: the store gives them back in UTC)."""
    from syndicator.parsing.items import parse_file

    ingest(store, [folder], now=T0)
    stored = {item.url: item for item in store.items()}
    for path in sorted(folder.glob("*.txt")):
        parsed = parse_file(path).item
        assert stored[parsed.url] == parsed


def test_reingesting_the_same_folder_changes_nothing(store: Store, folder: Path, tmp_path: Path) -> None:
    """A second run reports everything unchanged and leaves the database as it was."""
    ingest(store, [folder], now=T0)
    before = _dump(store)
    report = ingest(store, [folder], now=T0 + timedelta(hours=1))
    assert (report.new, report.updated, report.errors) == (0, 0, [])
    assert report.unchanged == len(list(folder.glob("*.txt")))
    assert _dump(store) == before


def test_unchanged_files_are_not_read_again(store: Store, folder: Path) -> None:
    """A file with the same size and mtime is skipped without re-parsing."""
    ingest(store, [folder], now=T0)
    seed = folder / SEED.name
    stat = seed.stat()
    text = seed.read_text(encoding="utf-8").replace("Les membres", "Des membres", 1)
    seed.write_text(text, encoding="utf-8")  # same length: "Les" and "Des"
    os.utime(seed, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    report = ingest(store, [folder], now=T0)
    assert report.updated == 0
    assert any(i.summary.startswith("Les membres") for i in store.items())


def test_a_changed_file_updates_its_item(store: Store, folder: Path) -> None:
    """A new content hash updates the item and its last_changed, keeps first_seen."""
    ingest(store, [folder], now=T0)
    seed = folder / SEED.name
    seed.write_text(
        seed.read_text(encoding="utf-8").replace("Les membres", "Tous les membres", 1), encoding="utf-8"
    )
    later = T0 + timedelta(days=1)
    report = ingest(store, [folder], now=later)
    assert (report.new, report.updated) == (0, 1)
    with store.engine.connect() as db:
        first_seen, last_changed = db.execute(
            text("SELECT first_seen, last_changed FROM items WHERE file LIKE :file"),
            {"file": f"%{SEED.name}"},
        ).one()
    assert str(first_seen).startswith("2026-11-26 07:00") and str(last_changed).startswith("2026-11-27 07:00")
    assert any(i.summary.startswith("Tous les membres") for i in store.items())


def test_a_broken_file_among_good_ones(store: Store, folder: Path) -> None:
    """One broken file is reported with its line; every good file is stored all the same."""
    (folder / "broken.txt").write_bytes(b"\x00\x01binary")
    (folder / "empty.txt").write_text("", encoding="utf-8")
    report = ingest(store, [folder], now=T0)
    assert sorted(str(p) for p in report.errors) == [
        f"{folder / 'broken.txt'}:1: binary file, not an item (it holds NUL bytes)",
        f"{folder / 'empty.txt'}:1: empty file, not an item",
    ]
    assert report.new == store.count_items() == len(list(ITEMS.glob("*.txt")))
    again = ingest(store, [folder], now=T0)
    assert len(again.errors) == 2, "a broken file is reported on every run until fixed"


def test_same_url_in_two_files_the_later_modification_wins(store: Store, tmp_path: Path) -> None:
    """Two files with one URL: the later `modifié le` is kept, whatever the order, with a warning."""
    url = "https://www.irev.fr/actualites-0/un-titre-de-test"
    folder = tmp_path / "dup"
    folder.mkdir()
    (folder / "a.txt").write_text(
        item_text(url, body="Un titre de test, version récente.", modified="02/12/2021 - 10:00")
    )
    (folder / "b.txt").write_text(
        item_text(url, body="Un titre de test, version ancienne.", modified="01/12/2021 - 10:00")
    )
    report = ingest(store, [folder], now=T0)
    [item] = list(store.items())
    assert "récente" in item.summary
    assert report.new == 1 and report.unchanged == 1
    [warning] = report.warnings
    assert str(folder / "a.txt") in warning.message and str(folder / "b.txt") in str(warning)

    # Reading the files the other way round gives the same outcome.
    other = Store.open(database_for(tmp_path, "other.db"))
    ingest(other, [folder / "b.txt"], now=T0)
    ingest(other, [folder / "a.txt"], now=T0)
    assert "récente" in next(iter(other.items())).summary


def test_a_renamed_file_takes_its_item_without_a_warning(store: Store, tmp_path: Path) -> None:
    """Moving an item file is not a duplicate: the old file is gone."""
    folder = tmp_path / "moving"
    folder.mkdir()
    (folder / "old.txt").write_text(item_text(), encoding="utf-8")
    ingest(store, [folder], now=T0)
    (folder / "old.txt").rename(folder / "new.txt")
    report = ingest(store, [folder], now=T0)
    assert report.warnings == [] and (report.new, report.updated, report.unchanged) == (0, 0, 1)
    assert next(iter(store.items())).file == str(folder / "new.txt")


@pytest.mark.sqlite_only
def test_sqlite_store_uses_wal_and_a_versioned_schema(store: Store, tmp_path: Path) -> None:
    """The SQLite file is in WAL mode and records its schema version."""
    with sqlite3.connect(tmp_path / "store.db") as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT max(version) FROM schema_version").fetchone()[0] == len(MIGRATIONS)
    assert Store.open(f"sqlite:///{tmp_path / 'store.db'}").version == len(MIGRATIONS)


def test_a_state_set_by_another_process_meanwhile_wins(store: Store, tmp_path: Path) -> None:
    """Two processes on a new store both find no secret and make one: the second to write does
    not fail, it takes the first one's (as `run` and `serve` started together would)."""
    other = Store.open(database_for(tmp_path, "store.db"))

    def make() -> str:  # the other process writes between this one's read and its write
        assert other.ensure_state("secret", lambda: "theirs") == "theirs"
        return "ours"

    assert store.ensure_state("secret", make) == "theirs"
    assert store.ensure_state("secret", lambda: "never") == "theirs"


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    """A database written by a newer syndicator is not touched."""
    from syndicator.errors import StoreError

    with Store.open(database_for(tmp_path, "store.db")) as store, store.engine.begin() as db:
        db.execute(text("INSERT INTO schema_version VALUES (99)"))
    with pytest.raises(StoreError, match="newer than this syndicator"):
        Store.open(database_for(tmp_path, "store.db"))


def test_files_over_several_chunks_are_all_stored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Many files are parsed and saved a chunk at a time: every item is stored, and a broken
    file among them is reported."""
    from syndicator.ingest import reading as ingest_module

    monkeypatch.setattr(ingest_module, "CHUNK", 40)  # so that a few files make several chunks
    folder = tmp_path / "many"
    numbered_items(folder, 130)
    (folder / "0100b.txt").write_text("pas un item", encoding="utf-8")
    store = Store.open(database_for(tmp_path, "many.db"))
    report = ingest(store, [folder], now=T0)
    assert report.new == 130 and [e.path for e in report.errors] == [str(folder / "0100b.txt")]
    titles = {i.title for i in store.items()}
    assert {"Titre numéro 7", "Titre numéro 129"} <= titles


def _dump(store: Store) -> dict[str, list[str]]:
    """Every row of every table, sorted: equal dumps are equal databases."""
    with store.engine.connect() as db:
        return {
            table: sorted(repr(tuple(row)) for row in db.execute(text(f"SELECT * FROM {table}")))
            for table in inspect(store.engine).get_table_names()
        }

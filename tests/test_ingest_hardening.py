"""Ingest against what a column or the database may refuse: long URLs and names are kept whole,
and a file the database refuses is that file's error only, never its chunk's."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Text, inspect, text

from syndicator.db.store import Store
from syndicator.ingest.reading import CHUNK, ingest

from .databases import database_for
from .support import item_text

T0 = datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
LONG_URL = "https://www.irev.fr/actualites-0/" + "-".join(["un-titre-tres-long"] * 111)[:2067]
LONG_NAME = "Politique de la ville " * 30


def _store(tmp_path: Path) -> Store:
    return Store.open(database_for(tmp_path, "store.db"))


def _fill(folder: Path, count: int) -> None:
    folder.mkdir(exist_ok=True)
    for number in range(count):
        (folder / f"{number:03}.txt").write_text(
            item_text(f"https://www.irev.fr/actualites-0/item-numero-{number}"), encoding="utf-8"
        )


def test_a_2100_character_url_and_a_long_term_name_are_stored_whole_beside_a_broken_file(
    tmp_path: Path,
) -> None:
    """In one chunk: a 2,100-character source URL with a 660-character thématique, a broken
    file and good ones. The broken file is the only error; the long values come back whole, in
    columns without a length bound (PostgreSQL refused them in its VARCHAR(2000) and (500))."""
    assert len(LONG_URL) == 2100
    folder = tmp_path / "items"
    _fill(folder, 5)
    fields = f"Thématiques: [{LONG_NAME.strip()}](#) [3]\n\n"
    (folder / "002-long.txt").write_text(item_text(LONG_URL, fields=fields), encoding="utf-8")
    (folder / "003-broken.txt").write_text("Pas un item.\n", encoding="utf-8")
    with _store(tmp_path) as store:
        report = ingest(store, [folder], now=T0)
        assert [str(e) for e in report.errors] == [
            f"{folder / '003-broken.txt'}:1: no source URL, so this is not an item; expected a line like "
            "'URL de la source (modifié le 30/11/2021 - 11:29): <https://…>'"
        ]
        assert (report.new, report.updated) == (6, 0)
        [long_item] = [item for item in store.items() if item.url == LONG_URL]
        assert [t.name for t in long_item.thematiques] == [LONG_NAME.strip()]
        assert LONG_URL in {stamp.url for stamp in store.item_headers()}
        columns = {
            (table, column["name"]): column["type"]
            for table in ("items", "terms", "files")
            for column in inspect(store.engine).get_columns(table)
        }
    for key in [("items", "url"), ("terms", "name"), ("terms", "key"), ("files", "path"), ("files", "url")]:
        assert isinstance(columns[key], Text) and getattr(columns[key], "length", None) is None, key


def test_a_file_the_database_refuses_is_its_own_error_and_the_chunk_is_stored(tmp_path: Path) -> None:
    """A database that refuses one row (here a trigger, as PostgreSQL refuses a value beyond a
    column's limit) fails that file alone, with its line; the other files of the chunk are
    stored (on PostgreSQL too, where a refused statement aborts its transaction), and the
    refused file is tried again at the next ingest."""
    folder = tmp_path / "items"
    _fill(folder, 20)
    message = "value too long for type character varying(2000)"
    with _store(tmp_path) as store, store.engine.begin() as connection:
        if store.engine.dialect.name == "sqlite":
            connection.execute(
                text(
                    "CREATE TRIGGER refuse BEFORE INSERT ON items WHEN NEW.url LIKE '%numero-7' "
                    f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
                )
            )
        else:
            connection.execute(
                text(
                    "CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                    f"IF NEW.url LIKE '%numero-7' THEN RAISE EXCEPTION '{message}'; END IF; "
                    "RETURN NEW; END $$"
                )
            )
            connection.execute(
                text("CREATE TRIGGER refuse BEFORE INSERT ON items FOR EACH ROW EXECUTE FUNCTION refuse()")
            )
    with _store(tmp_path) as store:
        report = ingest(store, [folder], now=T0)
        [error] = [str(e) for e in report.errors]
        # PostgreSQL adds where its trigger raised it ("CONTEXT: PL/pgSQL function ...").
        assert error.startswith(f"{folder / '007.txt'}:7: the database refused this item ({message}")
        assert error.endswith("); the other files are stored")
        assert (report.new, report.updated, report.unchanged) == (19, 0, 0)
        stored = {item.url for item in store.items()}
        assert len(stored) == 19 and "https://www.irev.fr/actualites-0/item-numero-7" not in stored
        again = ingest(store, [folder], now=T0)
        assert (again.new, again.unchanged, len(again.errors)) == (0, 19, 1)
    assert CHUNK > 20  # all of them in one chunk: the one the old code rolled back whole


def test_a_size_larger_than_any_file_is_dropped_with_a_warning_and_the_item_stored(tmp_path: Path) -> None:
    """`Poids : 99999999999999999999 Go` (beyond a database integer) leaves the attachment
    without a size, with a located warning, instead of failing the whole chunk."""
    folder = tmp_path / "items"
    _fill(folder, 3)
    fields = "Poids : 99999999999999999999 Go\n\n[Téléchargement](#) [1]\n\n"
    (folder / "001.txt").write_text(
        item_text("https://www.irev.fr/actualites-0/poids-enorme", fields=fields), encoding="utf-8"
    )
    with _store(tmp_path) as store:
        report = ingest(store, [folder], now=T0)
        assert report.errors == []
        assert [str(w) for w in report.warnings] == [
            f"{folder / '001.txt'}:5: warning: 'Poids' larger than any file; size ignored"
        ]
        [item] = [item for item in store.items() if item.url.endswith("poids-enorme")]
        assert [(a.url, a.size_bytes) for a in item.attachments] == [
            ("https://www.irev.fr/sites/default/files/doc.pdf", None)
        ]

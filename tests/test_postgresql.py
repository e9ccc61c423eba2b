"""PostgreSQL is first-class: the `postgres` extra brings its driver, `scripts/check` runs the
whole suite on SQLite and again on PostgreSQL, and every test has a database of its own, whichever
the run (tests/databases.py)."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import pytest

from syndicator.config.model import load_config
from syndicator.db.store import Store

from . import databases
from .support import ROOT


def test_the_postgres_extra_and_the_test_extra_bring_psycopg_3() -> None:
    """`pip install 'syndicator[postgres]'` installs psycopg 3 with its libpq; the `test` extra
    brings it too, for the suite's PostgreSQL run."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    assert extras["postgres"] == ["psycopg[binary]>=3.1"]
    assert "psycopg[binary]>=3.1" in extras["test"]


def test_the_check_runs_the_whole_suite_on_sqlite_then_on_postgresql() -> None:
    """`scripts/check` (what CI runs) runs pytest twice, the second time on PostgreSQL; `.ci/run`
    installs Debian's postgresql package and the `postgres` extra."""
    check = (ROOT / "scripts" / "check").read_text(encoding="utf-8").splitlines()
    assert '"$bin/pytest" -q' in check
    assert 'SYNDICATOR_TEST_DATABASE=postgresql "$bin/pytest" -q' in check
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert " postgresql >/dev/null" in ci
    assert "pip install --quiet -e '.[test,postgres]'" in ci


def test_each_test_has_a_database_of_its_own_of_the_runs_kind(database_url: str, tmp_path: Path) -> None:
    """The test's database is of the run's kind; another name is another database, and the same
    place asked again gives the same one."""
    with Store.open(database_url) as store:
        assert store.engine.dialect.name == databases.kind()
        assert store.ensure_state("marque", lambda: "ici") == "ici"
    assert databases.database_for(tmp_path) == database_url
    with Store.open(databases.database_for(tmp_path, "ailleurs.db")) as other:
        assert other.ensure_state("marque", lambda: "ailleurs") == "ailleurs"
    with Store.open(database_url) as again:
        assert again.ensure_state("marque", lambda: "jamais") == "ici"


def test_a_project_folder_copied_gets_a_copy_of_its_database(tmp_path: Path) -> None:
    """A project copied with its config (as the web tests copy one built project for each test)
    starts from the original's data, and what it writes stays its own."""
    built = tmp_path / "built"
    built.mkdir()
    databases.use_database(Path(shutil.copy(ROOT / "config.yaml", built / "config.yaml")))
    with Store.open(load_config(built / "config.yaml").database_url) as store:
        store.ensure_state("origine", lambda: "construit")
    copy = tmp_path / "copie"
    shutil.copytree(built, copy)
    databases.copy_database(built, copy)
    with Store.open(load_config(copy / "config.yaml").database_url) as store:
        assert store.ensure_state("origine", lambda: "jamais") == "construit"
        store.ensure_state("copie", lambda: "à part")
    with Store.open(load_config(built / "config.yaml").database_url) as store:
        assert store.ensure_state("copie", lambda: "absent") == "absent"


@pytest.mark.sqlite_only
def test_a_test_marked_sqlite_only_never_runs_on_postgresql() -> None:
    """The marker skips a test about SQLite itself in the PostgreSQL run (this one would fail)."""
    assert databases.kind() == "sqlite"

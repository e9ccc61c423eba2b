"""What the command modules share: opening the store, printing problems, local times."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from syndicator.config.model import Config
from syndicator.db.store import DIALECTS, Store
from syndicator.errors import ConfigError, Problem
from syndicator.i18n import _, shown

if TYPE_CHECKING:
    from syndicator.ingest.reading import IngestReport


def local_time(moment: datetime, zone: ZoneInfo) -> str:
    """A stored instant as the admin reads it: in the site's time zone, the zone named."""
    return f"{moment.astimezone(zone):%Y-%m-%d %H:%M %Z}"


def print_problems(problems: Sequence[Problem]) -> None:
    for problem in problems:
        print(problem.translated(), file=sys.stderr)


def database_ready(config: Config) -> None:
    """Raise a located `ConfigError` for a SQLite file that cannot be made, rather than let
    SQLAlchemy say it."""
    problem = database_error(config)
    if problem is not None:
        raise problem


def open_store(config: Config) -> Store:
    database_ready(config)
    return Store.open(config.database_url)


def print_ingest_report(report: IngestReport) -> int:
    print_problems(report.warnings)
    print_problems(report.errors)
    print(shown(report.summary()))
    return 1 if report.errors else 0


def utc_now() -> datetime:
    return datetime.now(UTC)


def database_error(config: Config) -> ConfigError | None:
    """Why the SQLite file `database:` names cannot be opened or made (its folder missing, or
    not writable; the name a folder), or why the URL names a database the store does not speak,
    located at the `database:` line; None when it can, and for PostgreSQL, which only
    connecting tells about."""
    try:
        url = make_url(config.database_url)
    except ArgumentError:
        return None  # opening the store says what is wrong with the URL
    name = url.database
    if url.get_backend_name() not in DIALECTS:
        message = _("{backend} is not a database syndicator can use: SQLite or PostgreSQL").format(
            backend=url.get_backend_name()
        )
        hint = _("use sqlite:///syndicator.db, or postgresql+psycopg://user@host/name")
        return _database_problem(config, message, hint)
    if url.get_backend_name() != "sqlite" or not name or name == ":memory:" or "uri" in url.query:
        return None
    path = Path(name)  # a relative name is taken from the current folder, as SQLite does
    folder = path.parent
    if path.is_dir():
        message = _("{path} is a folder, not a database file").format(path=path)
        hint = _("name a file in it: database: sqlite:///{file}").format(file=path / "syndicator.db")
    elif not folder.is_dir():
        message = _("the folder {folder} does not exist, so {name} cannot be made there").format(
            folder=folder, name=path.name
        )
        hint = _("create the folder (mkdir -p {folder}) or correct database: in {file}").format(
            folder=folder, file=config.source
        )
    elif not path.exists() and not os.access(folder, os.W_OK | os.X_OK):
        message = _("cannot create {name} in {folder}: permission denied").format(
            name=path.name, folder=folder
        )
        hint = _("run syndicator as a user who may write in {folder}, or choose another folder").format(
            folder=folder
        )
    else:
        return None
    return _database_problem(config, message, hint)


def _database_problem(config: Config, message: str, hint: str) -> ConfigError:
    """The error at the `database:` line. Only then is the line looked up: that reads the file
    again, a quarter of a second for a config listing a thousand subscribers."""
    line = config.line_of(["database"]) if "database" in config.model_fields_set else None
    return ConfigError([Problem(config.source, line, f"database: {message}")], hint=hint)

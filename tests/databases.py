"""The database every test runs on: a SQLite file in the test's folder, or, when
SYNDICATOR_TEST_DATABASE=postgresql, a fresh PostgreSQL database of its own on a server the
session starts in a temporary folder (initdb and pg_ctl, as the `postgres` user when run as root,
since initdb refuses root). Tests reach their database only through `database_for` and
`use_database`, so the same suite runs on both."""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg  # the PostgreSQL run only: the SQLite run needs no psycopg

VARIABLE = "SYNDICATOR_TEST_DATABASE"
KINDS = ("sqlite", "postgresql")


def kind() -> str:
    """Which database this run uses: `sqlite` (the default) or `postgresql`."""
    chosen = os.environ.get(VARIABLE, "sqlite").strip().lower() or "sqlite"
    if chosen not in KINDS:
        raise RuntimeError(f"{VARIABLE}={chosen!r}: expected one of {', '.join(KINDS)}")
    return chosen


def on_postgresql() -> bool:
    """True in the PostgreSQL run of the suite."""
    return kind() == "postgresql"


def _bin_dir() -> Path:
    """Where Debian (or PATH) keeps initdb and pg_ctl: the newest /usr/lib/postgresql/N/bin."""
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name)
    )
    if not versions:
        raise RuntimeError(
            "the PostgreSQL run needs initdb and pg_ctl; hint: apt-get install postgresql "
            "(or put its bin folder on PATH)"
        )
    return versions[-1].parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    """A throwaway PostgreSQL cluster listening on 127.0.0.1 only, tuned for speed over safety."""

    folder: Path
    port: int
    created: dict[str, Path] = field(default_factory=dict)  # database name: the folder it is for
    by_place: dict[tuple[Path, str], str] = field(default_factory=dict)
    _names: Iterator[int] = field(default_factory=itertools.count)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def _admin(self) -> psycopg.Connection[tuple[object, ...]]:
        import psycopg

        return psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        )

    def create(self, folder: Path, template: str = "template0") -> str:
        """A new database for a test's folder, its URL: empty (template0) or a copy of another."""
        name = f"test_{os.getpid()}_{next(self._names)}"
        with self._admin() as admin:
            admin.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        self.created[name] = folder
        return self.url(name)

    def drop(self, inside: Path | None = None) -> None:
        """Drop the databases made for folders `inside` a test's own (all of them when None),
        closing the connections that still hold them; a module's shared folder keeps its own."""
        gone = [n for n, f in self.created.items() if inside is None or f.is_relative_to(inside)]
        if not gone:
            return
        with self._admin() as admin:
            for name in gone:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
                del self.created[name]
        self.by_place = {
            place: url for place, url in self.by_place.items() if url.rsplit("/", 1)[1] in self.created
        }


_running: list[Server] = []  # the session's server, while it runs


def _as_postgres(*command: str) -> None:
    """Run a server command, as the `postgres` user when run as root (initdb refuses root)."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    done = subprocess.run([*prefix, *command], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed (exit {done.returncode}): {done.stderr.strip()}")


def _options(port: int) -> str:
    """The server's options: loopback only, tuned for speed over safety."""
    return (
        f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories='' "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
        "-c max_connections=300 -c shared_buffers=64MB"
    )


@contextlib.contextmanager
def postgresql_server() -> Iterator[Server]:
    """Start a cluster in a temporary folder (owned by `postgres` when run as root), stop it and
    remove the folder at the end."""
    bindir = _bin_dir()
    folder = Path(tempfile.mkdtemp(prefix="syndicator-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data = folder / "data"
    port = _free_port()
    options = _options(port)
    try:
        # Trust on loopback: a throwaway cluster holding only test data, for the session's length.
        _as_postgres(str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                     "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync")  # fmt: skip
        _as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(folder / "server.log"),
                     "-o", options, "-w", "-s", "start")  # fmt: skip
        _running.append(Server(folder, port))
        yield _running[0]
    finally:
        _running.clear()
        if (data / "postmaster.pid").exists():
            with contextlib.suppress(RuntimeError):
                _as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-s", "-w", "stop")
        shutil.rmtree(folder, ignore_errors=True)


def server() -> Server:
    """The session's PostgreSQL server (the PostgreSQL run only)."""
    if not _running:
        raise RuntimeError("no PostgreSQL server in this run: database_for() is the way in")
    return _running[0]


def restart_server(down: float) -> None:
    """Stop the session's PostgreSQL server (closing every connection, as a crash or an upgrade
    would), keep it down `down` seconds, and start it again with the same options."""
    bindir, data = _bin_dir(), server().folder / "data"
    _as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-s", "-w", "stop")
    time.sleep(down)
    _as_postgres(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(server().folder / "server.log"),
                 "-o", _options(server().port), "-w", "-s", "start")  # fmt: skip


@contextlib.contextmanager
def sqlite_opened() -> Iterator[set[str]]:
    """The SQLite files this process opens through SQLAlchemy meanwhile."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    opened: set[str] = set()

    def seen(connection: Any, _record: Any) -> None:
        if type(connection).__module__.startswith("sqlite3"):
            opened.add(str(connection.execute("PRAGMA database_list").fetchone()[2]))

    event.listen(Engine, "connect", seen)
    try:
        yield opened
    finally:
        event.remove(Engine, "connect", seen)


def collect_dropped_connections() -> None:
    """Collect the connections of stores a test left open, quietly: SQLite's close unseen when
    dropped, psycopg's warn; the server closes them anyway when their database is dropped."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def database_for(folder: Path, name: str = "syndicator.db") -> str:
    """The database a test keeps in `folder`: `sqlite:///folder/name` on SQLite; on PostgreSQL a
    fresh database of the test's own, the same one each time the same place is asked for."""
    if not on_postgresql():
        return f"sqlite:///{folder / name}"
    running = server()
    place = (folder.resolve(), name)
    if place not in running.by_place:
        running.by_place[place] = running.create(place[0])
    return running.by_place[place]


_DATABASE_LINE = re.compile(r"^database:.*$", re.MULTILINE)


def use_database(config: Path, text: str | None = None) -> Path:
    """Point the config file (written with `text` first, if given) at its test database: on
    SQLite it is left as written (its `database:` is a file beside it, `syndicator.db` when
    absent); on PostgreSQL its `database:` line names the test's own, added as the first line if
    absent (so that text appended later stays in its section)."""
    if text is not None:
        config.write_text(text, encoding="utf-8")
    if on_postgresql():
        text = config.read_text(encoding="utf-8")
        line = f"database: {database_for(config.parent)}"
        found = _DATABASE_LINE.search(text)
        text = _DATABASE_LINE.sub(line, text, count=1) if found else f"{line}\n{text}"
        config.write_text(text, encoding="utf-8")
    return config


def copy_database(source: Path, target: Path) -> None:
    """After a project folder `source` was copied to `target`: on SQLite the copy holds its own
    database file already; on PostgreSQL `target` gets a copy of `source`'s database (which
    nothing may hold open meanwhile) and its config.yaml names it."""
    if not on_postgresql():
        return
    running = server()
    original = running.by_place[(source.resolve(), "syndicator.db")]
    copy = running.create(target.resolve(), template=original.rsplit("/", 1)[1])
    running.by_place[(target.resolve(), "syndicator.db")] = copy
    config = target / "config.yaml"
    config.write_text(
        _DATABASE_LINE.sub(f"database: {copy}", config.read_text(encoding="utf-8"), count=1), encoding="utf-8"
    )

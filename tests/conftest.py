"""Shared fixtures: the shipped sample items, a scratch project folder, the CLI run in-process,
the test's database (SQLite, or PostgreSQL when SYNDICATOR_TEST_DATABASE=postgresql: see
tests/databases.py), and for the browser tests one headless Chromium per module with a fresh page
per test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings
from playwright.sync_api import Browser, Page

from syndicator.cli.main import main

from . import databases
from .support import ITEMS, ROOT

# Property tests explore new inputs at every run on a developer's machine; CI (.ci/run sets
# HYPOTHESIS_PROFILE=ci) replays a fixed sequence with no time limit per example, so a slow or
# loaded CI machine never fails a submission on a draw no one has seen.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


def pytest_configure(config: pytest.Config) -> None:
    if databases.on_postgresql():
        # SQLite's connections close unseen when dropped; psycopg's warn. A store a test leaves
        # open is closed by the server when its database is dropped at the test's end.
        config.addinivalue_line("filterwarnings", "ignore:.*was deleted while still open:ResourceWarning")


def pytest_report_header() -> str:
    return f"database: {databases.kind()} ({databases.VARIABLE})"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """In the PostgreSQL run, tests about SQLite itself are skipped, saying why."""
    if not databases.on_postgresql():
        return
    skip = pytest.mark.skip(reason="about SQLite itself (sqlite_only): not run on PostgreSQL")
    for item in items:
        if item.get_closest_marker("sqlite_only"):
            item.add_marker(skip)


@pytest.fixture(scope="session", autouse=True)
def postgresql_server() -> Iterator[None]:
    """In the PostgreSQL run, one server for the session, in a temporary folder."""
    if not databases.on_postgresql():
        yield
        return
    with databases.postgresql_server():
        yield
        databases.collect_dropped_connections()


@pytest.fixture(scope="module", autouse=True)
def _drop_module_databases() -> Iterator[None]:
    """The PostgreSQL databases of a module's shared folders are dropped when the module ends."""
    yield
    if databases.on_postgresql():
        databases.collect_dropped_connections()
        databases.server().drop()


@pytest.fixture(autouse=True)
def _drop_test_databases(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test's PostgreSQL databases are dropped when it ends (SQLite files go with tmp_path).
    In that run a test that opened a SQLite store without saying it is about SQLite fails: its
    config missed `use_database`, and it would test SQLite twice and PostgreSQL never."""
    if not databases.on_postgresql():
        yield
        return
    with databases.sqlite_opened() as opened:
        yield
    databases.collect_dropped_connections()
    databases.server().drop(inside=tmp_path.resolve())
    if opened and not request.node.get_closest_marker("sqlite_only"):
        pytest.fail(f"opened SQLite in the PostgreSQL run: {', '.join(sorted(opened))}", pytrace=False)


@pytest.fixture(autouse=True)
def english_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line speaks English in tests, as in CI logs, whatever the developer's locale;
    a test about French sets LANG itself."""
    for name in ("LANGUAGE", "LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "C.UTF-8")


@pytest.fixture
def no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """No secret from the developer's environment leaks into the test."""
    for name in list(os.environ):
        if name.startswith(("SYNDICATOR_SECRET", "SYNDICATOR_OLD_SECRET")):
            monkeypatch.delenv(name)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The test's own database: `sqlite:///<tmp_path>/syndicator.db`, or a fresh PostgreSQL one."""
    return databases.database_for(tmp_path)


@dataclass(frozen=True)
class Result:
    """What a command printed and returned."""

    code: int
    out: str
    err: str


Run = Callable[..., Result]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """Run `syndicator ARGS...` in-process and capture what it prints."""

    def invoke(*args: str) -> Result:
        capsys.readouterr()
        try:
            code = main(list(args))
        except SystemExit as exc:  # argparse's usage errors
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder laid out as a user's: config.yaml and items/ copied from the project, as cwd."""
    databases.use_database(Path(shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")))
    shutil.copytree(ITEMS, tmp_path / "items")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SYNDICATOR_CONFIG", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless, for the module (tests/browser_support.py)."""
    from .browser_support import chromium  # Playwright and uvicorn only where a browser is used

    with chromium() as launched:
        yield launched


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser context with JavaScript off: every flow must work without it."""
    context = browser.new_context(java_script_enabled=False, locale="fr-FR")
    try:
        yield context.new_page()
    finally:
        context.close()

"""Shared fixtures: the shipped sample items, a scratch project folder, the CLI run in-process,
and for the browser tests one headless Chromium per module with a fresh page per test."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import settings
from playwright.sync_api import Browser, Page

from syndicator.cli import main

from .support import ITEMS, ROOT

# Property tests explore new inputs at every run on a developer's machine; CI (.ci/run sets
# HYPOTHESIS_PROFILE=ci) replays a fixed sequence with no time limit per example, so a slow or
# loaded CI machine never fails a submission on a draw no one has seen.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


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
    shutil.copy(ROOT / "config.yaml", tmp_path / "config.yaml")
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

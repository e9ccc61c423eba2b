"""What the browser tests share: the web app served by uvicorn on a loopback port, and Debian's
headless Chromium driven by Playwright (never a browser Playwright would download).

The `browser` and `page` fixtures (one browser per module, a fresh context with JavaScript
off per test) are in tests/conftest.py; each module serves its own `project` with
`served_project`.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import lxml.html
import pytest
from playwright.sync_api import Browser, sync_playwright

from syndicator.cli.main import main
from syndicator.config.model import load_config
from syndicator.web.app import create_app

from .databases import use_database
from .support import ITEMS, ROOT
from .web_support import listening_socket, serving

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless; the tests are skipped where it is not installed."""
    if not os.access(CHROMIUM, os.X_OK):
        pytest.skip(f"{CHROMIUM} is missing: apt-get install chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass(frozen=True)
class Project:
    """A user's folder, its web app serving at `base_url`."""

    root: Path
    base_url: str

    def cli(self, *args: str) -> str:
        """Run `syndicator ARGS... --config <project>` in-process; what it printed."""
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err):
            code = main([*args, "--config", str(self.root / "config.yaml")])
        assert code == 0, err.getvalue()
        return out.getvalue()

    def listed(self, email: str) -> str:
        """The subscriber's row in `syndicator subscribers list`."""
        return next(row for row in self.cli("subscribers", "list").splitlines() if row.startswith(email))

    def mail_to(self, email: str, pattern: str = "*.eml") -> EmailMessage:
        """The message the outbox transport wrote for that address (a file matching `pattern`)."""
        for path in sorted((self.root / "outbox").glob(pattern)):
            message = message_from_bytes(path.read_bytes(), policy=policy.default)
            if isinstance(message, EmailMessage) and message["To"].addresses[0].addr_spec == email:
                return message
        raise AssertionError(f"no message to {email} in the outbox")


def link_in(message: EmailMessage, text: str) -> str:
    """The address of the link a reader clicks in the message's HTML part."""
    body = message.get_body(("html",))
    assert body is not None
    document = lxml.html.fromstring(body.get_content())
    [href] = document.xpath("//a[normalize-space(.)=$text]/@href", text=text)
    return str(href)


@contextmanager
def served_project(root: Path, *first: str) -> Iterator[Project]:
    """The shipped config.yaml and items in `root`, `web.base_url` pointing at the server, after
    the command `first` (e.g. `run --once`); then the web app serving it."""
    shutil.copytree(ITEMS, root / "items")
    sock, base_url = listening_socket()
    config = (ROOT / "config.yaml").read_text(encoding="utf-8")
    assert "base_url: http://127.0.0.1:8080" in config
    config = config.replace("base_url: http://127.0.0.1:8080", f"base_url: {base_url}")
    (root / "config.yaml").write_text(config, encoding="utf-8")
    use_database(root / "config.yaml")
    site = Project(root, base_url)
    site.cli(*first)
    with serving(create_app(load_config(root / "config.yaml")), sock):
        yield site

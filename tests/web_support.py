"""What the web tests share: the app under a real uvicorn on a loopback port, and, for the
TestClient tests of the pages, a project folder ingested once per module, copied for each test
and served by the real app, with a browser-like client."""

from __future__ import annotations

import re
import shutil
import socket
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import lxml.html
import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp

from syndicator.config.model import Config, load_config
from syndicator.db.store import Store
from syndicator.ingest.reading import ingest
from syndicator.web.app import create_app

from .databases import copy_database, use_database
from .support import ITEMS, ROOT

with warnings.catch_warnings():
    # Starlette asks for httpx2 and warns about httpx, which the project uses; same client API.
    warnings.simplefilter("ignore", UserWarning)
    from starlette.testclient import TestClient

SECRET = "secret pour les tests, assez long pour en être un"  # one secret, spaces and all
__all__ = [
    "SECRET", "TestClient", "WebSite", "built_project", "listening_socket", "served", "serving", "text_of",
]  # fmt: skip


@dataclass
class WebSite:
    """A project folder with its store, the web app on it, and a browser-like client."""

    root: Path
    config: Config
    app: Starlette
    client: TestClient

    @property
    def store(self) -> Store:
        store: Store = self.app.state.web.store
        return store

    def hidden(self, path: str) -> dict[str, str]:
        """GET a page; the hidden fields of its form (CSRF token, consent version)."""
        page = self.client.get(path)
        assert page.status_code == 200, page.text
        return dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]+)">', page.text))


S = TypeVar("S", bound=WebSite)


def built_project(root: Path) -> Path:
    """The shipped config.yaml and items in `root`, ingested."""
    use_database(Path(shutil.copy(ROOT / "config.yaml", root / "config.yaml")))
    shutil.copytree(ITEMS, root / "items")
    config = load_config(root / "config.yaml")
    with Store.open(config.database_url) as store:
        ingest(store, [config.items_path])
    return root


def served(kind: type[S], built: Path, root: Path, edit: Callable[[str], str] | None = None) -> Iterator[S]:
    """A fresh copy of the `built` project in `root` (its config.yaml's text passed through
    `edit`), served by the web app while in use."""
    shutil.copytree(built, root)
    copy_database(built, root)
    if edit is not None:
        path = root / "config.yaml"
        path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
    config = load_config(root / "config.yaml")
    app = create_app(config)
    with TestClient(app) as client:
        yield kind(root, config, app, client)


def text_of(html: str) -> str:
    """What a reader of the page sees, whitespace collapsed."""
    document = lxml.html.fromstring(html)
    for hidden in document.xpath("//style | //head"):
        hidden.drop_tree()
    return " ".join(document.text_content().split())


def listening_socket() -> tuple[socket.socket, str]:
    """A loopback socket on a free port, and the base URL it will answer at. Made before the
    server so that config.yaml's `web.base_url` (the links in emails) can name the port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock, f"http://127.0.0.1:{sock.getsockname()[1]}"


@contextmanager
def serving(app: ASGIApp, sock: socket.socket) -> Iterator[None]:
    """Run `app` under uvicorn on `sock`, in a thread, until the block ends."""
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws="none", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            thread.join(0.01)
        yield
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()

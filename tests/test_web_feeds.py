"""Feeds over HTTP as feed readers see them: a real uvicorn server on a loopback port serving real
feeds built from the shipped items, mounted at `/feeds` as the web app mounts it."""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import socket
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from email.utils import formatdate, parsedate_to_datetime
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from syndicator.config.model import Config, parse_config
from syndicator.feeds.build import write_atomic
from syndicator.feeds.server import feeds_app

from .support import item_text
from .test_feeds import Site
from .web_support import listening_socket, serving

RSS = "application/rss+xml; charset=utf-8"
PLAIN = {"accept-encoding": "identity"}
GZIP = {"accept-encoding": "gzip"}


@contextmanager
def feeds_served(config: Config) -> Iterator[httpx.Client]:
    """A uvicorn server on a free loopback port with the feeds mounted at /feeds, and a client."""
    sock, base_url = listening_socket()
    with (
        serving(Starlette(routes=[Mount("/feeds", app=feeds_app(config))]), sock),
        httpx.Client(base_url=base_url) as client,
    ):
        yield client


def raw_get(client: httpx.Client, target: str) -> tuple[int, bytes]:
    """Status and body of a GET sent byte for byte, with a target no client library would send."""
    url = client.base_url
    with socket.create_connection((url.host, url.port or 80), timeout=5) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The feeds of the shipped items, built once for the module."""
    site = Site(tmp_path_factory.mktemp("site"))
    site.ingest()
    site.build()
    site.store.close()
    return site.feeds


def copy_config(built: Path, folder: Path, yaml: str = "feeds: {output: feeds/}\n") -> Config:
    """A config whose feeds folder is a fresh copy of the built feeds."""
    shutil.copytree(built, folder / "feeds")
    return parse_config(yaml, folder / "config.yaml")


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory, built: Path) -> Config:
    """The feeds the read-only tests share."""
    return copy_config(built, tmp_path_factory.mktemp("shared"))


@pytest.fixture(scope="module")
def client(config: Config) -> Iterator[httpx.Client]:
    """A client of the server of the shared feeds."""
    with feeds_served(config) as client:
        yield client


@pytest.fixture
def own_config(tmp_path: Path, built: Path) -> Config:
    """A copy of the feeds for a test that changes them."""
    return copy_config(built, tmp_path)


def test_each_file_is_served_as_it_is_with_its_content_type(client: httpx.Client, config: Config) -> None:
    """RSS, Atom, OPML and the index page (at /feeds/) come with their media type and their bytes."""
    feeds = config.feeds_path
    expected = {
        "/feeds/all.rss": (RSS, "all.rss"),
        "/feeds/all.atom": ("application/atom+xml; charset=utf-8", "all.atom"),
        "/feeds/thematiques/sante.rss": (RSS, "thematiques/sante.rss"),
        "/feeds/territoires/roubaix.atom": (
            "application/atom+xml; charset=utf-8",
            "territoires/roubaix.atom",
        ),
        "/feeds/index.opml": ("text/x-opml; charset=utf-8", "index.opml"),
        "/feeds/": ("text/html; charset=utf-8", "index.html"),
    }
    for url, (media_type, name) in expected.items():
        response = client.get(url, headers=PLAIN)
        assert response.status_code == 200, url
        assert response.headers["content-type"] == media_type
        assert response.content == (feeds / name).read_bytes()
        assert response.headers["content-length"] == str(len(response.content))
        assert response.headers["vary"] == "Accept-Encoding"
        assert "content-encoding" not in response.headers


def test_etag_is_strong_and_comes_from_the_bytes_alone(
    client: httpx.Client, config: Config, own_config: Config
) -> None:
    """The same bytes give the same strong ETag, a hash of them, from request to request and
    from server to server (a restart, or two servers behind a proxy)."""
    first = client.get("/feeds/all.rss", headers=PLAIN).headers["etag"]
    assert client.get("/feeds/all.rss", headers=PLAIN).headers["etag"] == first
    assert first.startswith('"') and first.endswith('"')  # strong: no W/ prefix
    digest = hashlib.sha256((config.feeds_path / "all.rss").read_bytes()).hexdigest()
    assert digest.startswith(first.strip('"'))
    with feeds_served(own_config) as other:
        assert other.get("/feeds/all.rss", headers=PLAIN).headers["etag"] == first
        assert other.get("/feeds/all.atom", headers=PLAIN).headers["etag"] != first


def test_matching_if_none_match_gets_304_without_body(client: httpx.Client) -> None:
    """The ETag sent back, alone, in a list, weak, or `*`, gets a bodyless 304 with the cache headers."""
    response = client.get("/feeds/all.rss", headers=PLAIN)
    etag = response.headers["etag"]
    for value in (etag, f'"autre", {etag}', f"W/{etag}", '"autre",W/' + etag, "*"):
        again = client.get("/feeds/all.rss", headers={**PLAIN, "if-none-match": value})
        assert again.status_code == 304, value
        assert again.content == b""
        assert again.headers["etag"] == etag
        assert again.headers["cache-control"] == response.headers["cache-control"]
        assert again.headers["vary"] == "Accept-Encoding"
    other = client.get("/feeds/all.rss", headers={**PLAIN, "if-none-match": '"autre", W/"encore"'})
    assert other.status_code == 200
    assert other.content == response.content


def test_if_modified_since_gets_304_unless_the_feed_is_newer(client: httpx.Client) -> None:
    """A date at or after Last-Modified gets a 304; an earlier one, or a bad one, the feed."""
    response = client.get("/feeds/all.rss", headers=PLAIN)
    last = parsedate_to_datetime(response.headers["last-modified"]).timestamp()
    cases = {
        response.headers["last-modified"]: 304,
        formatdate(last + 3600, usegmt=True): 304,
        formatdate(last - 1, usegmt=True): 200,
        "pas une date": 200,
    }
    for value, status in cases.items():
        again = client.get("/feeds/all.rss", headers={**PLAIN, "if-modified-since": value})
        assert again.status_code == status, value
    # If-None-Match decides when both are sent: a stale ETag gets the feed whatever the date.
    both = {"if-none-match": '"ancien"', "if-modified-since": response.headers["last-modified"]}
    assert client.get("/feeds/all.rss", headers={**PLAIN, **both}).status_code == 200


def test_last_modified_is_the_date_of_the_newest_item(client: httpx.Client, config: Config) -> None:
    """Last-Modified is the date the feed gives itself (RSS lastBuildDate, Atom updated, OPML
    dateModified: its newest item's), not when the file was written."""
    feeds = config.feeds_path
    dates = {
        "all.rss": ET.parse(feeds / "all.rss").findtext("channel/lastBuildDate"),
        "index.opml": ET.parse(feeds / "index.opml").findtext("head/dateModified"),
    }
    newest = {name: parsedate_to_datetime(text or "").timestamp() for name, text in dates.items()}
    updated = ET.parse(feeds / "all.atom").findtext("{http://www.w3.org/2005/Atom}updated") or ""
    newest["all.atom"] = int(datetime.fromisoformat(updated).timestamp())
    assert newest["all.rss"] < (feeds / "all.rss").stat().st_mtime - 3600
    for name, when in newest.items():
        header = client.get(f"/feeds/{name}").headers["last-modified"]
        assert parsedate_to_datetime(header).timestamp() == when, name
        assert header.endswith(" GMT")


def test_gzip_when_accepted_with_its_own_etag(client: httpx.Client, config: Config) -> None:
    """A client that accepts gzip gets the feed compressed, decoding to the file's bytes, with an
    ETag of its own; each encoding's ETag gets its 304."""
    plain = client.get("/feeds/all.rss", headers=PLAIN)
    response = client.get("/feeds/all.rss", headers=GZIP)
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert response.headers["content-type"] == RSS
    assert response.content == (config.feeds_path / "all.rss").read_bytes()
    assert int(response.headers["content-length"]) < len(response.content) / 2
    zipped = response.headers["etag"]
    assert zipped != plain.headers["etag"]
    assert client.get("/feeds/all.rss", headers={**GZIP, "if-none-match": zipped}).status_code == 304
    assert client.get("/feeds/all.rss", headers={**PLAIN, "if-none-match": zipped}).status_code == 200
    identity = plain.headers["etag"]
    assert client.get("/feeds/all.rss", headers={**PLAIN, "if-none-match": identity}).status_code == 304
    assert client.get("/feeds/all.rss", headers={**GZIP, "if-none-match": identity}).status_code == 200
    since = {"if-modified-since": plain.headers["last-modified"]}
    assert client.get("/feeds/all.rss", headers={**GZIP, **since}).status_code == 304


def test_gzip_bytes_on_the_wire_decode_to_the_file(client: httpx.Client, config: Config) -> None:
    """The compressed body, as sent, is a gzip stream of the file."""
    with client.stream("GET", "/feeds/index.opml", headers=GZIP) as response:
        wire = b"".join(response.iter_raw())
    assert gzip.decompress(wire) == (config.feeds_path / "index.opml").read_bytes()
    assert len(wire) == int(response.headers["content-length"])


def test_gzip_only_when_the_client_accepts_it(client: httpx.Client) -> None:
    """`q=0` refuses gzip, `*` accepts it, and no Accept-Encoding at all gets the plain file."""
    cases = {
        "gzip;q=0, identity": None,
        "gzip; q=0.0": None,
        "br;q=1.0, gzip;q=0.5": "gzip",
        "*": "gzip",
        "*;q=0": None,
        "deflate": None,
        "GZIP": "gzip",
    }
    for value, encoding in cases.items():
        response = client.get("/feeds/all.rss", headers={"accept-encoding": value})
        assert response.headers.get("content-encoding") == encoding, value
    bare = raw_get(client, "/feeds/all.rss")
    assert bare[0] == 200
    assert bare[1].startswith(b"<?xml")


def test_head_gives_the_headers_of_get_without_body(client: httpx.Client) -> None:
    """HEAD answers what GET would, headers included, with no body."""
    for headers in (PLAIN, GZIP):
        got = client.get("/feeds/all.atom", headers=headers)
        head = client.head("/feeds/all.atom", headers=headers)
        assert head.status_code == 200
        assert head.content == b""
        for name in ("content-type", "content-length", "etag", "last-modified", "cache-control", "vary"):
            assert head.headers[name] == got.headers[name]
    etag = client.head("/feeds/all.atom", headers=PLAIN).headers["etag"]
    assert client.head("/feeds/all.atom", headers={**PLAIN, "if-none-match": etag}).status_code == 304


def test_a_rewritten_feed_is_served_at_the_next_request(tmp_path: Path) -> None:
    """When the feeds are rebuilt while the server runs, the next request gets the new feed:
    the old ETag no longer gets a 304, and the new item is in the body."""
    site = Site(tmp_path)
    site.ingest()
    site.build()
    with feeds_served(site.config) as client:
        before = client.get("/feeds/all.rss", headers=PLAIN)
        (site.config.items_path / "zz_new.txt").write_text(
            item_text(
                "https://www.irev.fr/actualites-0/une-nouvelle-actualite",
                body="Une nouvelle actualité publiée pendant que le serveur tourne.",
                modified="30/12/2026 - 10:00",
            ),
            encoding="utf-8",
        )
        site.ingest()
        assert "all.rss" in site.build().written_files
        after = client.get("/feeds/all.rss", headers={**PLAIN, "if-none-match": before.headers["etag"]})
        assert after.status_code == 200
        assert after.headers["etag"] != before.headers["etag"]
        assert after.content == (site.feeds / "all.rss").read_bytes()
        assert b"Une nouvelle actualit" in after.content
        assert (
            client.get(
                "/feeds/all.rss", headers={**PLAIN, "if-none-match": after.headers["etag"]}
            ).status_code
            == 304
        )
    site.store.close()


def test_a_file_replaced_with_the_same_size_and_time_is_still_noticed(own_config: Config) -> None:
    """A rewrite is a new file (os.replace): even with the same size and mtime, its bytes are served."""
    path = own_config.feeds_path / "index.opml"
    with feeds_served(own_config) as client:
        before = client.get("/feeds/index.opml", headers=PLAIN)
        data = path.read_bytes()
        changed = data.replace(b"IREV", b"VERI", 1)
        assert len(changed) == len(data)
        status = path.stat()
        write_atomic(path, changed)
        os.utime(path, ns=(status.st_atime_ns, status.st_mtime_ns))
        after = client.get("/feeds/index.opml", headers=PLAIN)
    assert after.content == changed
    assert after.headers["etag"] != before.headers["etag"]


def test_a_removed_feed_gets_a_404(own_config: Config) -> None:
    """A feed deleted while the server runs (its term lost its last item) is gone at once."""
    with feeds_served(own_config) as client:
        assert client.get("/feeds/thematiques/sante.rss").status_code == 200
        (own_config.feeds_path / "thematiques" / "sante.rss").unlink()
        assert client.get("/feeds/thematiques/sante.rss").status_code == 404


def test_unknown_paths_get_a_french_404_page(client: httpx.Client) -> None:
    """A feed that does not exist, a folder, another kind of file: a short French page, status 404."""
    for url in (
        "/feeds/nulle-part.rss",
        "/feeds/thematiques/inconnue.atom",
        "/feeds/thematiques/",
        "/feeds/thematiques",
        "/feeds/all.rss/",
        "/feeds/all.xml",
        "/feeds/index.html.bak",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        assert response.headers["content-type"] == "text/html; charset=utf-8"
        assert '<html lang="fr"' in response.text
        assert "Flux introuvable" in response.text
        assert 'href="/feeds/"' in response.text


def test_paths_out_of_the_folder_are_refused(own_config: Config, tmp_path: Path) -> None:
    """`..`, encoded or not, absolute paths, hidden files and links leading out get a 404."""
    (tmp_path / "secret.rss").write_text("<rss>secret</rss>", encoding="utf-8")
    feeds = own_config.feeds_path
    (feeds / "lien.rss").symlink_to(tmp_path / "secret.rss")
    (feeds / "dossier").symlink_to(tmp_path)
    (feeds / ".all.rss.tmp").write_bytes((feeds / "all.rss").read_bytes())
    (feeds / "meme-flux.rss").symlink_to(feeds / "all.rss")
    targets = [
        "/feeds/../secret.rss",
        "/feeds/%2e%2e/secret.rss",
        "/feeds/thematiques/..%2f..%2fsecret.rss",
        "/feeds/thematiques/%2E%2E/%2E%2E/secret.rss",
        "/feeds//" + str(tmp_path / "secret.rss").lstrip("/"),
        "/feeds/%2f" + str(tmp_path / "secret.rss").lstrip("/"),
        "/feeds/lien.rss",
        "/feeds/dossier/secret.rss",
        "/feeds/.all.rss.tmp",
        "/feeds/./all.rss",
        "/feeds/all.rss%00.html",
    ]
    with feeds_served(own_config) as client:
        for target in targets:
            status, body = raw_get(client, target)
            assert status == 404, target
            assert b"Flux introuvable" in body
            assert b"secret" not in body
        assert client.get("/feeds/meme-flux.rss").status_code == 200  # a link inside is fine


def test_cache_control_max_age_comes_from_the_config(tmp_path: Path, built: Path) -> None:
    """`web.feeds_max_age` sets Cache-Control's max-age, on 200s and 304s; 600 s by default."""
    config = copy_config(built, tmp_path, "feeds: {output: feeds/}\nweb: {feeds_max_age: 42}\n")
    with feeds_served(config) as client:
        response = client.get("/feeds/all.rss")
        assert response.headers["cache-control"] == "public, max-age=42"
        again = client.get("/feeds/all.rss", headers={"if-none-match": response.headers["etag"]})
        assert again.headers["cache-control"] == "public, max-age=42"
    default = parse_config("feeds: {output: feeds/}\n", tmp_path / "config.yaml")
    assert default.web.feeds_max_age == 600


def test_other_methods_are_not_allowed(client: httpx.Client) -> None:
    """Feeds are read-only: POST gets a 405 naming GET and HEAD."""
    response = client.post("/feeds/all.rss", content=b"x")
    assert response.status_code == 405
    assert response.headers["allow"] == "GET, HEAD"
    assert "Méthode non autorisée" in response.text

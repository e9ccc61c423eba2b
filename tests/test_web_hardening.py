"""The web app's defences of its own, with or without a proxy in front: body, form, header and
time limits under a real uvicorn; cookies read without Python's quadratic unquoting; sign-up
quotas by mailbox and for the whole site; masked addresses and an explicit resubscription on
the unsubscribe pages; the security headers of pages and feeds; logs without tokens; and
X-Forwarded-For believed only from configured proxies."""

from __future__ import annotations

import base64
import hashlib
import logging
import re
import select
import shutil
import socket
import threading
import time
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import lxml.html
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request

from syndicator.cli.main import main
from syndicator.config.model import load_config, parse_config
from syndicator.config.subscribers import Subscriber
from syndicator.db.ledger import Ledger
from syndicator.db.schema import signup_requests
from syndicator.db.signups import (
    LIMITS,
    Limit,
    Limits,
    RateLimited,
    client_ip,
    create_request,
    mailbox_key,
)
from syndicator.db.store import Store
from syndicator.db.tokens import AddressTokens, Purpose
from syndicator.errors import ConfigError
from syndicator.web.app import create_app
from syndicator.web.limits import cookie, server_config
from syndicator.web.unsubscribe import masked

from .databases import copy_database, database_for
from .web_support import SECRET, TestClient, WebSite, built_project, listening_socket, served, text_of

MARIE = "marie.dupont@example.org"  # config.yaml: weekly, Éducation, Nord
T0 = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def link(purpose: Purpose, email: str = MARIE) -> str:
    return f"/{purpose}/{AddressTokens([SECRET], purpose).seal(email)}"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped config.yaml and items, ingested once for the module."""
    return built_project(tmp_path_factory.mktemp("hardening"))


@pytest.fixture
def site(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[WebSite]:
    """A fresh copy of the built project, served by the web app (TestClient)."""
    monkeypatch.setenv("SYNDICATOR_SECRET", SECRET)
    yield from served(WebSite, built, tmp_path / "site")


class Live:
    """A server's port, and the raw connections a test opened to it (closed with the server)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.opened: list[socket.socket] = []

    def connect(self) -> socket.socket:
        connection = socket.create_connection(("127.0.0.1", self.port))
        connection.settimeout(10)
        self.opened.append(connection)
        return connection


@contextmanager
def live(app: Starlette, **settings: object) -> Iterator[Live]:
    """`app` under a real uvicorn with the settings `syndicator serve` uses (and `settings`),
    on a loopback port."""
    sock, _ = listening_socket()
    server = uvicorn.Server(server_config(app, log_level="warning", **settings))  # type: ignore[arg-type]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive(), "uvicorn did not start"
            thread.join(0.01)
        server_live = Live(sock.getsockname()[1])
        try:
            yield server_live
        finally:
            for connection in server_live.opened:
                connection.close()
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def project(built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Starlette]:
    """Makes the web app on a fresh copy of the built project, config.yaml passed through `edit`."""
    monkeypatch.setenv("SYNDICATOR_SECRET", SECRET)

    def make(edit: Callable[[str], str] = lambda text: text, body_timeout: float = 20.0) -> Starlette:

        root = tmp_path / "live"
        shutil.copytree(built, root)
        copy_database(built, root)
        path = root / "config.yaml"
        path.write_text(edit(path.read_text(encoding="utf-8")), encoding="utf-8")
        return create_app(load_config(path), body_timeout=body_timeout)

    return make


def answer(connection: socket.socket) -> bytes:
    """What the server sent until it closed the connection (or reset it)."""
    received = b""
    try:
        while data := connection.recv(65536):
            received += data
    except (ConnectionResetError, TimeoutError):
        pass
    return received


def resident_mb() -> int:
    """This process's resident memory (the server runs in one of its threads), in MB."""
    with open("/proc/self/status", encoding="ascii") as status:
        line = next(line for line in status if line.startswith("VmRSS:"))
    return int(line.split()[1]) // 1024


# --- 9. limits of its own --------------------------------------------------------------------


def test_a_huge_unsubscribe_body_gets_413_and_is_never_held_in_memory(
    project: Callable[..., Starlette],
) -> None:
    """64 MB streamed (chunked, no length announced) to an unsubscribe link: the server answers
    413 with the French page after a few KB, closes the connection, and its memory does not
    grow by the body's size."""
    with live(project()) as server:
        before = resident_mb()
        connection = server.connect()
        connection.sendall(
            f"POST {link('unsubscribe')} HTTP/1.1\r\nHost: x\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        )
        chunk = b"100000\r\n" + b"a" * 0x100000 + b"\r\n"
        sent = 0
        try:
            while sent < 64 and not select.select([connection], [], [], 0)[0]:
                connection.sendall(chunk)
                sent += 1
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = answer(connection)
        assert response.startswith(b"HTTP/1.1 413"), response[:200]
        assert b"Envoi trop volumineux" in response
        assert sent < 64  # cut short
        assert resident_mb() - before < 32


def test_a_body_nobody_reads_is_not_drained(project: Callable[..., Starlette]) -> None:
    """64 MB streamed to a feed (which answers 405 without reading it): the answer closes the
    connection instead of reading and discarding the rest."""
    with live(project()) as server:
        connection = server.connect()
        connection.sendall(b"POST /feeds/all.rss HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"100000\r\n" + b"a" * 0x100000 + b"\r\n"
        sent = 0
        with suppress(BrokenPipeError, ConnectionResetError):
            while sent < 64 and not select.select([connection], [], [], 0)[0]:
                connection.sendall(chunk)
                sent += 1
        response = answer(connection)
        assert response.startswith(b"HTTP/1.1 405"), response[:200]
        assert b"\r\nconnection: close\r\n" in response.lower()
        assert sent < 64


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded", None])
def test_an_announced_huge_body_gets_413_before_any_byte_of_it(
    project: Callable[..., Starlette], content_type: str | None
) -> None:
    """A `Content-Length: 400000000` on a sign-up POST (a form, or no type at all, which the
    form reader would never read) is answered 413 at once, with the French page."""
    with live(project()) as server:
        connection = server.connect()
        typed = f"Content-Type: {content_type}\r\n" if content_type else ""
        connection.sendall(
            f"POST /subscribe HTTP/1.1\r\nHost: x\r\nContent-Length: 400000000\r\n{typed}\r\n".encode()
        )
        response = answer(connection)
        assert response.startswith(b"HTTP/1.1 413")
        assert b"Envoi trop volumineux" in response


@pytest.mark.parametrize(
    "body",
    ["f=x&" * 1000, "email=" + "a" * 20_000, None],
    ids=["1000 fields", "a 20 KB field", "a file"],
)
def test_a_form_over_its_limits_gets_413(site: WebSite, body: str | None) -> None:
    """A sign-up form with 1,000 fields, one field of 20 KB, or a file is refused before it is
    used, with the French 413 page."""
    if body is None:
        response = site.client.post("/subscribe", files={"email": ("a.txt", b"data")})
    else:
        urlencoded = {"content-type": "application/x-www-form-urlencoded"}
        response = site.client.post("/subscribe", content=body, headers=urlencoded)
    assert response.status_code == 413
    assert "Envoi trop volumineux" in text_of(response.text)


def test_a_huge_header_is_refused(project: Callable[..., Starlette]) -> None:
    """A 1 MB header gets a 400 and the connection is closed: headers are capped at 16 KB."""
    with live(project()) as server:
        connection = server.connect()
        with suppress(BrokenPipeError, ConnectionResetError):
            connection.sendall(b"GET /subscribe HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 2**20 + b"\r\n\r\n")
        assert answer(connection).startswith(b"HTTP/1.1 400")


def test_a_client_sending_its_headers_slowly_is_cut_off(project: Callable[..., Starlette]) -> None:
    """A client trickling a header line every 0.2 s (a slowloris) is disconnected once the
    header timeout (1 s here) has passed, though it never stopped sending."""
    with live(project(), header_timeout=1.0) as server:
        connection = server.connect()
        started = time.monotonic()
        connection.sendall(b"GET /subscribe HTTP/1.1\r\nHost: x\r\n")
        with pytest.raises((BrokenPipeError, ConnectionResetError)):  # noqa: PT012
            while time.monotonic() - started < 8:
                connection.sendall(b"X-Slow: y\r\n")
                time.sleep(0.2)
        assert time.monotonic() - started < 4


def test_a_body_sent_too_slowly_gets_408(project: Callable[..., Starlette]) -> None:
    """A POST announcing 100 bytes and sending one gets the French 408 page once the body
    timeout (1 s here) has passed."""
    with live(project(body_timeout=1.0)) as server:
        connection = server.connect()
        started = time.monotonic()
        connection.sendall(f"POST {link('unsubscribe')} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
                           "Content-Type: application/x-www-form-urlencoded\r\n\r\na".encode())  # fmt: skip
        response = answer(connection)
        assert response.startswith(b"HTTP/1.1 408")
        assert b"Envoi trop lent" in response
        assert time.monotonic() - started < 5


def test_connections_beyond_the_limit_get_503(project: Callable[..., Starlette]) -> None:
    """With a limit of 2, two idle connections held open leave a third request a 503."""
    with live(project(), max_connections=2) as server:
        idle = [server.connect(), server.connect()]
        time.sleep(0.2)
        refused = httpx.get(f"http://127.0.0.1:{server.port}/subscribe")
        assert refused.status_code == 503
        for connection in idle:
            connection.close()


def test_a_crafted_cookie_costs_no_time(site: WebSite) -> None:
    """A Cookie of backslashes (CVE-2024-7592, quadratic in Python 3.11.7's http.cookies) is
    read in well under a second: 14 KB, within the header limit, is served and the page still
    gets its CSRF cookie; 40 KB (8 s of the event loop in the stdlib) is refused at once."""
    crafted = 'x="' + "\\\\" * 3_500 + '"; syndicator_csrf="' + "\\\\" * 3_500 + '"'
    started = time.monotonic()
    page = site.client.get("/subscribe", headers={"Cookie": crafted})
    assert time.monotonic() - started < 0.5
    assert page.status_code == 200
    assert "syndicator_csrf=" in page.headers["set-cookie"]  # the crafted value was not taken
    crafted = 'x="' + "\\\\" * 20_000 + '"; syndicator_csrf="' + "\\\\" * 20_000 + '"'
    started = time.monotonic()
    page = site.client.get("/subscribe", headers={"Cookie": crafted})
    assert time.monotonic() - started < 0.5
    assert page.status_code == 431
    # The app's reader itself, on what a larger header limit would let through: linear.
    huge = crafted * 10  # 800 KB: minutes in http.cookies
    request = Request({"type": "http", "headers": [(b"cookie", huge.encode())]})
    started = time.monotonic()
    assert cookie(request, "syndicator_csrf") is not None
    assert time.monotonic() - started < 0.5


# --- 10. sign-up quotas ----------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(database_for(tmp_path, "store.db")) as opened:
        yield opened


def ask(store: Store, email: str, ip: str, limits: Limits = LIMITS, at: datetime = T0) -> None:
    create_request(store, Subscriber(email), ip=ip, wording="v1", now=at, limits=limits)


def test_mailboxes_are_counted_without_tags_and_gmail_dots() -> None:
    """The quota key drops a `+tag` and case everywhere, dots only at Gmail, and reads a
    Unicode domain as its IDNA form."""
    assert mailbox_key("Victim+1@Example.org") == "victim@example.org"
    assert mailbox_key("v.ictim+x@googlemail.com") == "victim@gmail.com"
    assert mailbox_key("v.ictim@example.org") == "v.ictim@example.org"
    # A domain typed in Unicode and its IDNA form are one mailbox, one quota.
    assert mailbox_key("victim+2@mairie-évry.fr") == mailbox_key("Victim@xn--mairie-vry-h7a.fr")


def test_sub_addresses_and_dots_share_one_mailbox_quota(store: Store) -> None:
    """Three requests for `victim+1@`, `v.ictim@`, `victim+b@gmail.com` (from three IPs) use
    the mailbox's daily quota: a fourth spelling is refused."""
    for n, email in enumerate(["victim+1@gmail.com", "v.ictim@gmail.com", "Victim+b@googlemail.com"]):
        ask(store, email, f"192.0.2.{n}", at=T0 + timedelta(minutes=n))
    with pytest.raises(RateLimited) as refused:
        ask(store, "vic.tim@gmail.com", "192.0.2.9", at=T0 + timedelta(minutes=5))
    assert refused.value.scope == "address"
    ask(store, "other@gmail.com", "192.0.2.9", at=T0 + timedelta(minutes=5))  # another mailbox


def test_the_whole_site_has_an_hourly_cap(store: Store) -> None:
    """With a site cap of 3 an hour, a fourth request (new address, new IP) is refused until
    the first leaves the hour."""
    limits = Limits(site=Limit(3, timedelta(hours=1)))
    for n in range(3):
        ask(store, f"p{n}@example.org", f"192.0.2.{n}", limits, T0 + timedelta(minutes=n))
    with pytest.raises(RateLimited) as refused:
        ask(store, "p9@example.org", "198.51.100.1", limits, T0 + timedelta(minutes=10))
    assert refused.value.scope == "site"
    assert refused.value.retry_after == timedelta(minutes=50)
    ask(store, "p9@example.org", "198.51.100.1", limits, T0 + timedelta(hours=1, seconds=1))


def test_the_per_64_rule_still_holds(store: Store) -> None:
    """Ten requests from one IPv6 /64 (different hosts, different addresses) use its quota."""
    for n in range(10):
        ask(store, f"q{n}@example.org", client_ip(f"2001:db8:1:2::{n + 1}"), at=T0 + timedelta(minutes=n))
    with pytest.raises(RateLimited) as refused:
        ask(store, "q99@example.org", client_ip("2001:db8:1:2:ffff::1"), at=T0 + timedelta(minutes=20))
    assert refused.value.scope == "ip"


def test_the_site_cap_comes_from_config_and_gets_a_french_page(
    built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`web.signups_per_hour: 1`: the second sign-up of the hour (another address) gets a 429
    page saying the site receives too many requests."""
    monkeypatch.setenv("SYNDICATOR_SECRET", SECRET)

    def edit(text: str) -> str:
        return text.replace("\nweb:\n", "\nweb:\n  signups_per_hour: 1\n", 1)

    sites = served(WebSite, built, tmp_path / "capped", edit)
    assert isinstance(sites, Generator)
    capped = next(sites)
    assert capped.config.web.signups_per_hour == 1

    def sign_up(email: str) -> httpx.Response:
        data = {**capped.hidden("/subscribe"), "email": email, "frequency": "weekly", "consent": "yes",
                "action": "subscribe"}  # fmt: skip
        response: httpx.Response = capped.client.post("/subscribe", data=data)
        return response

    assert sign_up("un@example.org").status_code == 200
    refused = sign_up("deux@example.org")
    assert refused.status_code == 429
    assert "Nous recevons en ce moment trop de demandes d’inscription" in text_of(refused.text)
    sites.close()


# --- 13. the unsubscribe page ----------------------------------------------------------------


def test_masks_keep_at_most_two_letters() -> None:
    """Long names keep two letters, short ones one, a one-letter name none; the domain shows."""
    assert masked("claire.martin@example.org") == "cl•••@example.org"
    assert masked("bob@example.org") == "b•••@example.org"
    assert masked("x@example.org") == "•••@example.org"


def test_unsubscribe_pages_show_the_address_masked(site: WebSite) -> None:
    """Whoever opens the link sees `ma•••@example.org`, before and after unsubscribing, never
    the address itself."""
    path = link("unsubscribe")
    before = site.client.get(path)
    done = site.client.post(path, data=site.hidden(path))
    for page in (before, done):
        assert page.status_code == 200
        assert "ma•••@example.org" in text_of(page.text)
        assert MARIE not in page.text and "marie" not in page.text


def test_once_unsubscribed_only_an_explicit_button_resubscribes(site: WebSite) -> None:
    """The unsubscribed page carries no preferences link (whose form would resubscribe); its
    "Me réabonner" button, with its CSRF token, lifts the unsubscription."""
    path = link("unsubscribe")
    done = site.client.post(path, data=site.hidden(path))
    document = lxml.html.fromstring(done.text)
    assert not [href for href in document.xpath("//a/@href") if "/preferences/" in href]
    assert document.xpath("//button[@name='action' and @value='resubscribe']")
    assert MARIE in Ledger(site.store).suppressed()
    refused = site.client.post(path, data={"action": "resubscribe"})  # no CSRF token
    assert refused.status_code == 403 and MARIE in Ledger(site.store).suppressed()
    again = site.client.post(path, data={**site.hidden(path), "action": "resubscribe"})
    assert again.status_code == 200
    assert "Vous êtes réabonné·e" in text_of(again.text)
    assert MARIE not in Ledger(site.store).suppressed()


def test_the_resubscribe_button_never_lifts_a_bounce(site: WebSite) -> None:
    """An address suppressed because its mailbox refused our messages stays suppressed."""
    Ledger(site.store).suppress(MARIE, "bounced", T0)
    path = link("unsubscribe")
    page = site.client.post(path, data={**site.hidden(path), "action": "resubscribe"})
    assert "Réabonnement impossible ici" in text_of(page.text)
    assert Ledger(site.store).suppressed()[MARIE][0] == "bounced"


# --- 14. headers, logs, proxies --------------------------------------------------------------


def test_pages_allow_nothing_but_their_own_styles(site: WebSite) -> None:
    """Every page's Content-Security-Policy starts from `default-src 'none'` and allows its
    inline <style> by hash, nothing else."""
    for response in (site.client.get("/subscribe"), site.client.get(link("unsubscribe")),
                     site.client.get("/nowhere")):  # fmt: skip
        policy = response.headers["content-security-policy"]
        assert policy.startswith("default-src 'none'; style-src 'sha256-")
        assert "unsafe-inline" not in policy and "script-src" not in policy
        assert "frame-ancestors 'none'" in policy
    page = site.client.get("/subscribe")
    [css] = re.findall(r"<style>(.*?)</style>", page.text, re.DOTALL)
    digest = base64.b64encode(hashlib.sha256(css.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in page.headers["content-security-policy"]


def test_feeds_are_served_with_nosniff(site: WebSite) -> None:
    """Feeds, the feed index and the feeds' 404 carry `X-Content-Type-Options: nosniff`."""
    assert main(["feeds", "--config", str(site.root / "config.yaml")]) == 0
    for path in ("/feeds/all.rss", "/feeds/", "/feeds/nowhere.rss"):
        response = site.client.get(path)
        assert response.headers["x-content-type-options"] == "nosniff", path
    assert site.client.get("/feeds/all.rss").status_code == 200


def test_a_server_error_logs_the_route_never_the_token(
    site: WebSite, caplog: pytest.LogCaptureFixture
) -> None:
    """An admin's broken unsubscribe template gives the French 500 page; the log names the
    route `/unsubscribe/{token}`, and no log line holds the token."""
    broken = site.root / "templates" / "web" / "unsubscribe.html"
    broken.parent.mkdir(parents=True, exist_ok=True)
    broken.write_text("{{ nothing.here }}", encoding="utf-8")
    path = link("unsubscribe")
    token = path.rsplit("/", 1)[1]
    with caplog.at_level(logging.ERROR), TestClient(site.app, raise_server_exceptions=False) as client:
        response = client.get(path)
    assert response.status_code == 500
    assert "Erreur du serveur" in text_of(response.text)
    assert any("GET /unsubscribe/{token}" in record.getMessage() for record in caplog.records)
    assert token not in caplog.text


def _stored_ips(app: Starlette) -> list[str]:
    with app.state.web.store.engine.connect() as connection:
        return [row.ip for row in connection.execute(signup_requests.select())]


def _sign_up_through(port: int, forwarded_for: str) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as browser:
        form = browser.get("/subscribe").text
        hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]+)">', form))
        data = {**hidden, "email": "anne@example.org", "frequency": "weekly", "consent": "yes",
                "action": "subscribe"}  # fmt: skip
        response = browser.post("/subscribe", data=data, headers={"X-Forwarded-For": forwarded_for})
        assert response.status_code == 200, response.text


def test_x_forwarded_for_is_ignored_unless_from_a_trusted_proxy(
    project: Callable[..., Starlette], caplog: pytest.LogCaptureFixture
) -> None:
    """By default a visitor's X-Forwarded-For is ignored: the sign-up records (and rate-limits)
    the connection's address; the log says once how to believe a real proxy."""
    app = project()
    assert app.state.web.config.web.trusted_proxies == []
    with caplog.at_level(logging.WARNING), live(app, trusted_proxies=[]) as server:
        _sign_up_through(server.port, "203.0.113.9")
        _sign_up_through(server.port, "203.0.113.9")
    assert _stored_ips(app) == ["127.0.0.1", "127.0.0.1"]
    [warning] = [r.getMessage() for r in caplog.records if "X-Forwarded-For" in r.getMessage()]
    assert "X-Forwarded-For from 127.0.0.1 ignored" in warning and "web.trusted_proxies" in warning


def test_a_trusted_proxy_that_is_no_address_is_a_config_error(tmp_path: Path) -> None:
    """`web.trusted_proxies: [nginx]` is refused at load time, naming the value and the line."""
    text = "web:\n  trusted_proxies: [127.0.0.1, nginx]\n"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, tmp_path / "config.yaml")
    [problem] = caught.value.problems()
    assert problem.line == 2
    assert "'nginx' is not an IP address or network" in problem.message


def test_x_forwarded_for_is_believed_from_a_listed_proxy(project: Callable[..., Starlette]) -> None:
    """With `web.trusted_proxies: [127.0.0.1]` (nginx on the same machine), the address nginx
    passes is the one recorded."""
    app = project(lambda text: text.replace("\nweb:\n", "\nweb:\n  trusted_proxies: [127.0.0.1]\n", 1))
    proxies = app.state.web.config.web.trusted_proxies
    assert proxies == ["127.0.0.1"]
    with live(app, trusted_proxies=proxies) as server:
        _sign_up_through(server.port, "203.0.113.9")
    assert _stored_ips(app) == ["203.0.113.9"]

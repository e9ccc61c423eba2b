"""The IMAP bounce mailbox against a real Dovecot: listing, sizes, moves, TLS, and every failure."""

from __future__ import annotations

import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from pydantic import ValidationError

from syndicator.bounces.imap import ImapMailbox
from syndicator.bounces.mailbox import MailboxUnavailable
from syndicator.config.imap import ImapSettings

from .imap_server import PASSWORD_ENV, USER_ENV, WITHOUT_MOVE, WITHOUT_UIDPLUS, Dovecot, ImapServer, dovecot


@pytest.fixture(scope="module")
def dovecot_server() -> Iterator[Dovecot]:
    with dovecot() as server:
        yield server


@pytest.fixture
def server(dovecot_server: Dovecot, monkeypatch: pytest.MonkeyPatch) -> ImapServer:
    """A fresh account with an empty mailbox; its login in the variables the settings name."""
    account = dovecot_server.account()
    for name, value in account.environment.items():
        monkeypatch.setenv(name, value)
    return account


def _message(number: int, body: bytes = b"") -> bytes:
    return (
        f"From: MAILER-DAEMON@relay.example.org\r\nSubject: message {number}\r\n"
        f"Message-ID: <{number}@relay.example.org>\r\n\r\n"
    ).encode() + (body or f"Delivery to someone failed ({number}).\r\n".encode())


@pytest.mark.parametrize("tls", ["ssl", "starttls"])
def test_messages_are_listed_oldest_first_with_their_bytes(server: ImapServer, tls: Any) -> None:
    """Over implicit TLS and STARTTLS alike (with a password holding quotes and `ö`, which LOGIN
    cannot carry), each message comes with its exact bytes, in the order it arrived, and listing it
    does not mark it read."""
    sent = [_message(number) for number in (1, 2, 3)]
    for raw in sent:
        server.append(raw)
    with ImapMailbox(server.settings(tls), max_bytes=10_000) as mailbox:
        listed = list(mailbox.messages())
    assert [message.raw for message in listed] == sent
    assert [message.size for message in listed] == [len(raw) for raw in sent]
    assert len({message.key for message in listed}) == 3
    assert all(b"\\Seen" not in flags for _raw, flags in server.contents())


def test_an_oversize_message_is_listed_by_its_size_and_never_downloaded(server: ImapServer) -> None:
    """A 2 MB message beside small ones comes with raw None and its size, and its body never
    crosses the network: the whole session reads a few kilobytes (counted by a relay)."""
    big = _message(2, b"x" * 2_000_000 + b"\r\n")
    server.append(_message(1))
    server.append(big)
    server.append(_message(3))
    with (
        _relay(server.port) as relay,
        ImapMailbox(server.settings("none", port=relay.port), max_bytes=100_000) as mailbox,
    ):
        listed = list(mailbox.messages())
    assert [(message.raw is None, message.size) for message in listed] == [
        (False, len(_message(1))),
        (True, len(big)),
        (False, len(_message(3))),
    ]
    assert 0 < relay.received < 20_000


@pytest.fixture(scope="module", params=["MOVE", "COPY and UID EXPUNGE", "COPY only"])
def any_server(request: pytest.FixtureRequest) -> Iterator[Dovecot]:
    """Dovecot as it is (MOVE), then offering neither MOVE nor (last) UIDPLUS after login."""
    capabilities = {"MOVE": None, "COPY and UID EXPUNGE": WITHOUT_MOVE, "COPY only": WITHOUT_UIDPLUS}
    with dovecot(capabilities=capabilities[request.param]) as found:
        yield found


@pytest.mark.parametrize("destination", ["processed", "unrecognised"])
def test_a_move_creates_the_folder_and_touches_nothing_else(
    any_server: Dovecot, destination: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Moving one message creates its folder and puts it there; the other messages stay, and one
    another client had flagged \\Deleted keeps its flag and its place. Without UIDPLUS, the moved
    message's copy in the inbox stays flagged \\Deleted (no EXPUNGE of others) and is not listed."""
    server = any_server.account()
    for name, value in server.environment.items():
        monkeypatch.setenv(name, value)
    kept, moved, deleted = _message(1), _message(2), _message(3)
    server.append(kept)
    server.append(moved)
    server.append(deleted, flags=[b"\\Deleted"])
    with ImapMailbox(server.settings(), max_bytes=10_000) as mailbox:
        listed = {message.raw: message.key for message in mailbox.messages()}
        assert set(listed) == {kept, moved}  # the one flagged \Deleted by someone else is not ours
        mailbox.move(listed[moved], destination)
    assert destination in server.folders()
    assert [raw for raw, _flags in server.contents(destination)] == [moved]
    inbox = dict(server.contents())
    assert b"\\Deleted" not in inbox[kept]
    assert b"\\Deleted" in inbox[deleted]
    with server.client() as client:
        offers_uidplus = client.has_capability("UIDPLUS") or client.has_capability("MOVE")
    assert (moved in inbox) is not offers_uidplus
    with ImapMailbox(server.settings(), max_bytes=10_000) as mailbox:
        assert [message.raw for message in mailbox.messages()] == [kept]


def test_the_fallback_servers_really_lack_move(any_server: Dovecot, request: pytest.FixtureRequest) -> None:
    """The servers standing for older ones do not offer MOVE (so the moves above took the COPY path)."""
    server = any_server.account()
    with server.client() as client:
        assert client.has_capability("MOVE") is (request.node.callspec.params["any_server"] == "MOVE")


def test_moves_into_an_existing_folder_and_from_a_second_session(server: ImapServer) -> None:
    """A folder already there (made by a person, or by an earlier run) is used as it is."""
    server.append(_message(1))
    server.append(_message(2))
    for _ in range(2):
        with ImapMailbox(server.settings(), max_bytes=10_000) as mailbox:
            first = next(iter(mailbox.messages()))
            mailbox.move(first.key, "processed")
    assert [raw for raw, _flags in server.contents("processed")] == [_message(1), _message(2)]
    assert server.contents() == []


def test_folders_go_under_the_namespace_of_servers_that_keep_them_in_the_inbox(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a server whose folders all live under `INBOX.` (Courier's way), `processed` is made
    as `INBOX.processed`, where the server allows it and a mail program shows it."""
    with dovecot(prefix="INBOX.") as running:
        server = running.account()
        monkeypatch.setenv(USER_ENV, server.username)
        monkeypatch.setenv(PASSWORD_ENV, server.password)
        server.append(_message(1))
        with ImapMailbox(server.settings(), max_bytes=10_000) as mailbox:
            [message] = mailbox.messages()
            mailbox.move(message.key, "processed")
        assert server.folders() == {"INBOX", "INBOX.processed"}
        assert [raw for raw, _flags in server.contents("INBOX.processed")] == [_message(1)]


def test_a_key_from_another_folder_generation_is_refused(server: ImapServer) -> None:
    """A key whose UIDVALIDITY is not the folder's is never used to move a message."""
    server.append(_message(1))
    with ImapMailbox(server.settings(), max_bytes=10_000) as mailbox:
        key = next(iter(mailbox.messages())).key
        validity, _, uid = key.partition(".")
        with pytest.raises(MailboxUnavailable, match="UIDVALIDITY changed"):
            mailbox.move(f"{int(validity) + 1}.{uid}", "processed")
        with pytest.raises(ValueError, match="not a message key"):
            mailbox.move("junk", "processed")
    assert [raw for raw, _flags in server.contents()] == [_message(1)]


def test_a_wrong_password_says_which_variables_to_check(
    server: ImapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused login names the server, the user and the variables, never the password."""
    monkeypatch.setenv(PASSWORD_ENV, "not-the-password")
    with pytest.raises(MailboxUnavailable) as raised:
        ImapMailbox(server.settings(), max_bytes=1000).__enter__()
    error = raised.value
    assert f"127.0.0.1:{server.ssl_port}" in error.message
    assert f"login refused for user {server.username!r}" in error.message
    assert error.hint is not None and f"${PASSWORD_ENV}" in error.hint
    assert "not-the-password" not in str(error) + error.hint


def test_a_missing_variable_is_named_before_any_connection(
    server: ImapServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An unset variable is named; the server is not even contacted (a silent port proves it)."""
    monkeypatch.delenv(USER_ENV)
    with _silent_server() as port, pytest.raises(MailboxUnavailable) as raised:
        ImapMailbox(server.settings(port=port, timeout=30), max_bytes=1000).__enter__()
    assert f"${USER_ENV}, which is not set" in raised.value.message


def test_a_closed_port_is_reported_at_once(server: ImapServer) -> None:
    """Nothing listening: `connection refused`, with the address, without waiting."""
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    refused = rf"127\.0\.0\.1:{port}: connecting failed: connection refused"
    with pytest.raises(MailboxUnavailable, match=refused):
        ImapMailbox(server.settings(port=port), max_bytes=1000).__enter__()
    assert time.monotonic() - started < 2


@pytest.mark.parametrize("tls", ["ssl", "starttls"])
def test_a_server_that_never_answers_is_given_up_after_the_timeout(server: ImapServer, tls: Any) -> None:
    """A port that accepts and then stays silent (no TLS handshake, no greeting) is left after
    `timeout` seconds, saying so."""
    with _silent_server() as port:
        started = time.monotonic()
        with pytest.raises(MailboxUnavailable, match=r"no answer within 1 s") as raised:
            ImapMailbox(server.settings(tls, port=port, timeout=1), max_bytes=1000).__enter__()
        elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 3
    assert raised.value.hint is not None and "port" in raised.value.hint


def test_a_server_that_stops_answering_mid_session_is_given_up(server: ImapServer) -> None:
    """A server that goes silent after the login (here: a relay that stops carrying anything)
    fails the next command after `timeout` seconds, not never; nothing was moved."""
    server.append(_message(1))
    with (
        _relay(server.port) as relay,
        ImapMailbox(server.settings("none", port=relay.port, timeout=1), max_bytes=1000) as mailbox,
    ):
        [message] = mailbox.messages()
        relay.frozen.set()
        started = time.monotonic()
        with pytest.raises(MailboxUnavailable) as raised:
            mailbox.move(message.key, "processed")
    elapsed = time.monotonic() - started
    assert "no answer within 1 s" in raised.value.message
    assert 0.9 < elapsed < 2.9
    assert [raw for raw, _flags in server.contents()] == [_message(1)]


def test_a_certificate_not_trusted_is_refused(server: ImapServer) -> None:
    """Without ca_file, the self-signed certificate is refused: certificates are always checked."""
    with pytest.raises(MailboxUnavailable, match="certificate not trusted") as raised:
        ImapMailbox(server.settings(ca_file=None), max_bytes=1000).__enter__()
    assert raised.value.hint is not None and "ca_file" in raised.value.hint


def test_implicit_tls_on_the_starttls_port_says_which_port_is_which(server: ImapServer) -> None:
    """tls: ssl pointed at port 143's kind of service fails the handshake with a hint about ports."""
    with pytest.raises(MailboxUnavailable, match="TLS failed") as raised:
        ImapMailbox(server.settings("ssl", port=server.port), max_bytes=1000).__enter__()
    assert raised.value.hint is not None and "993" in raised.value.hint


def test_a_folder_named_in_french_is_read(server: ImapServer) -> None:
    """`folder: Retours à traiter`: accents and spaces reach the server encoded as IMAP wants."""
    with server.client() as client:
        client.create_folder("Retours à traiter")
    server.append(_message(1), folder="Retours à traiter")
    with ImapMailbox(server.settings(folder="Retours à traiter"), max_bytes=1000) as mailbox:
        [message] = mailbox.messages()
        mailbox.move(message.key, "unrecognised")
    assert [raw for raw, _flags in server.contents("unrecognised")] == [_message(1)]
    assert server.contents("Retours à traiter") == []


def test_a_misspelt_folder_gets_a_suggestion(server: ImapServer) -> None:
    """folder: INBX names no folder: the error says so and suggests the nearest one."""
    with pytest.raises(MailboxUnavailable, match="has no folder 'INBX'") as raised:
        ImapMailbox(server.settings(folder="INBX"), max_bytes=1000).__enter__()
    assert raised.value.hint is not None and "did you mean 'INBOX'?" in raised.value.hint


def _settings(**values: Any) -> ImapSettings:
    return ImapSettings.model_validate(
        {"host": "imap.example.org", "username_env": "IMAP_USER", "password_env": "IMAP_PASSWORD"} | values
    )


def test_settings_default_the_port_to_the_tls_mode() -> None:
    """993 for implicit TLS (the default mode), 143 for STARTTLS; a given port is kept."""
    assert (_settings().tls, _settings().port) == ("ssl", 993)
    assert _settings(tls="starttls").port == 143
    assert _settings(tls="starttls", port=1143).port == 1143
    assert _settings().folder == "INBOX" and _settings().timeout == 30


@pytest.mark.parametrize(
    ("values", "where", "says"),
    [
        ({"pasword_env": "X"}, ("pasword_env",), "Extra inputs are not permitted"),
        ({"tls": "none"}, ("tls",), "tls: none would send the password in plain text to imap.example.org"),
        ({"tls": "STARTTLS"}, ("tls",), "Input should be 'ssl', 'starttls' or 'none'"),
        ({"host": "imap.example.org:993"}, ("host",), "put the port in `port:`"),
        ({"host": "imaps://imap.example.org"}, ("host",), "write the host name only"),
        ({"port": 99999}, ("port",), "less than or equal to 65535"),
        ({"password_env": "hunter2 !"}, ("password_env",), "must name an environment variable"),
    ],
)
def test_bad_settings_are_refused_where_they_are(
    values: dict[str, Any], where: tuple[str], says: str
) -> None:
    """A typo, plain text to a remote host, a port in the host, a password written instead of the
    name of its variable: each refused at its own key (so the config file's line can be named),
    and a secret written by mistake is not repeated."""
    with pytest.raises(ValidationError) as raised:
        _settings(**values)
    [error] = raised.value.errors()
    assert error["loc"] == where
    assert says in error["msg"]
    assert "hunter2" not in error["msg"]


def test_plain_text_is_allowed_to_this_machine_only(server: ImapServer) -> None:
    """tls: none is accepted for localhost and 127.x, and then works against the real server."""
    assert _settings(host="localhost", tls="none").port == 143
    assert _settings(host="127.0.0.2", tls="none").tls == "none"
    server.append(_message(1))
    with ImapMailbox(server.settings("none", port=server.port), max_bytes=1000) as mailbox:
        assert [message.raw for message in mailbox.messages()] == [_message(1)]


@contextmanager
def _silent_server() -> Iterator[int]:
    """A port that accepts connections (the kernel completes them) and never says a word."""
    with closing(socket.create_server(("127.0.0.1", 0))) as listener:
        yield listener.getsockname()[1]


@dataclass
class _Relay:
    port: int
    received: int = 0  # bytes carried from the server to the client so far
    frozen: threading.Event = field(default_factory=threading.Event)  # set: nothing is carried


@contextmanager
def _relay(target: int) -> Iterator[_Relay]:
    """A TCP relay on loopback to the port `target`, for one connection."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(5)
    relay = _Relay(listener.getsockname()[1])
    stop = threading.Event()

    def pump() -> None:
        client, _ = listener.accept()
        upstream = socket.create_connection(("127.0.0.1", target))
        with client, upstream:
            while not stop.is_set():
                if relay.frozen.is_set():
                    time.sleep(0.05)
                    continue
                ready, _, _ = select.select([client, upstream], [], [], 0.05)
                for side in ready:
                    data = side.recv(65536)
                    if not data:
                        return
                    (upstream if side is client else client).sendall(data)
                    if side is upstream:
                        relay.received += len(data)

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    try:
        yield relay
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def test_every_imap_key_is_documented() -> None:
    """The IMAP section of docs/bounces.md shows each key of the settings in its example block."""
    from .support import ROOT

    page = (ROOT / "docs" / "bounces.md").read_text(encoding="utf-8")
    section = page.split("## Bounce mailbox over IMAP\n", 1)[1].split("\n## ", 1)[0]
    for name in ImapSettings.model_fields:
        assert f"{name}:" in section, name

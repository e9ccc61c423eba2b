"""A real SMTP server for tests: aiosmtpd on 127.0.0.1, on a port the OS picks, misbehaving on cue.

The server runs in its own thread and event loop (aiosmtpd's `Controller`), so the client under
test shares nothing with it but sockets. The handler records what arrives and answers from a
script: replies for given recipients, replies for the first DATA commands, connections dropped
once DATA is in.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import shutil
import ssl
import subprocess
import sys
import threading
from collections import Counter, deque
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class Received:
    """One DATA the server took in, whatever it answered."""

    sender: str
    recipients: tuple[str, ...]
    data: bytes
    accepted: bool


class Handler:
    """Records every session and message; answers as scripted, else 250."""

    def __init__(
        self,
        *,
        rcpt_replies: Mapping[str, str] | None = None,
        data_replies: Sequence[str] = (),
        drops: int = 0,
        stalls: int = 0,
        logins: Mapping[str, str] | None = None,
    ) -> None:
        """`data_replies` answer the first DATA commands in turn; `drops` DATA commands after
        those are answered by closing the connection, then `stalls` by a minute of silence;
        `logins` are the accepted user: password."""
        self.rcpt_replies = dict(rcpt_replies or {})
        self._data_replies = deque(data_replies)
        self._drops, self._stalls = drops, stalls
        self._logins = dict(logins or {})
        self._lock = threading.Lock()
        self.received: list[Received] = []
        self.peers: set[object] = set()  # (address, port) of each client connection
        self.credentials: list[tuple[str, str]] = []

    @property
    def accepted(self) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.accepted]

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        with self._lock:
            self.peers.add(session.peer)
        return responses

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        reply = self.rcpt_replies.get(address)
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        with self._lock:
            reply = self._data_replies.popleft() if self._data_replies else None
            drop = reply is None and self._drops > 0
            stall = reply is None and not drop and self._stalls > 0
            self._drops, self._stalls = self._drops - drop, self._stalls - stall
            data = envelope.original_content or b""
            accepted = reply is None and not drop and not stall
            self.received.append(Received(str(envelope.mail_from), tuple(envelope.rcpt_tos), data, accepted))
        if drop:
            assert isinstance(server.transport, asyncio.Transport)
            server.transport.abort()  # no reply: the client cannot know whether it arrived
            return "250 OK (never seen: the connection is gone)"
        if stall:
            await asyncio.sleep(60)  # cancelled when the client hangs up
        return reply or "250 OK queued"

    def authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        assert isinstance(data, LoginPassword)
        user, password = data.login.decode(), data.password.decode()
        with self._lock:
            self.credentials.append((user, password))
        # handled=False lets aiosmtpd answer a failure (535 5.7.8); its default, handled=True,
        # means "I replied myself" and leaves the client waiting for an answer that never comes.
        return AuthResult(success=self._logins.get(user) == password, handled=False)


class SlowHandler(Handler):
    """Accepts every message after a pause, as a distant relay would."""

    def __init__(self, delay: float, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.delay = delay

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


class _DistantSMTP(SMTP):
    """aiosmtpd's server, waiting `reply_delay` seconds before each reply (the greeting, 354 and
    STARTTLS's 220 included), as a server a few milliseconds away would seem. A reply of several
    lines (EHLO's) is pushed a line at a time: the wait comes before its first line only."""

    reply_delay = 0.0
    _continued = False  # the last line pushed said more lines follow ("250-…")

    async def push(self, status: Any) -> None:
        if not self._continued:
            await asyncio.sleep(self.reply_delay)
        line = status.encode() if isinstance(status, str) else status
        self._continued = line[3:4] == b"-"
        await super().push(status)


class _Controller(Controller):
    """aiosmtpd's Controller on port 0: its start() connects to `self.port` to check the server is
    up, which fails for 0 (aiosmtpd issues #276, #388), so read the port the OS chose first.
    With `reply_delay`, its server waits that long before each reply."""

    reply_delay = 0.0

    def factory(self) -> SMTP:
        if not self.reply_delay:
            return super().factory()  # type: ignore[no-untyped-call,no-any-return]  # unannotated
        server = _DistantSMTP(self.handler, **self.SMTP_kwargs)
        server.reply_delay = self.reply_delay
        return server

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]  # aiosmtpd leaves it unannotated


@contextmanager
def smtp_server(
    handler: Handler,
    *,
    starttls: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    auth: bool = False,
    reply_delay: float = 0.0,
    smtputf8: bool = True,
) -> Iterator[int]:
    """Serve `handler` on 127.0.0.1 while the block runs; yields the port.

    `starttls` offers STARTTLS with that context, `implicit_tls` speaks TLS from the start,
    `auth` offers AUTH PLAIN/LOGIN (after TLS only, as aiosmtpd does by default), and the
    server waits `reply_delay` seconds before each reply; with `smtputf8=False` it does not
    offer SMTPUTF8 (RFC 6531), which aiosmtpd's Controller offers by default."""
    extra: dict[str, Any] = {}
    if auth:
        extra["authenticator"] = handler.authenticate
    controller = _Controller(
        handler,
        hostname="127.0.0.1",
        port=0,
        server_hostname="localhost",  # else aiosmtpd asks DNS for the FQDN on every connection
        tls_context=starttls,
        ssl_context=implicit_tls,
        ready_timeout=5.0,
        enable_SMTPUTF8=smtputf8,
        **extra,
    )
    controller.reply_delay = reply_delay
    controller.start()
    try:
        yield int(controller.port)
    finally:
        controller.stop()


def self_signed(folder: Path) -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate for localhost and 127.0.0.1."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is needed to make a test certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-days", "2", "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


def message_ids(handler: Handler) -> Counter[tuple[str, str]]:
    """How many times each (recipient, Message-ID) pair reached the server."""
    found: Counter[tuple[str, str]] = Counter()
    for received in handler.accepted:
        parsed = email.message_from_bytes(received.data, policy=email.policy.default)
        found[(received.recipients[0], str(parsed["Message-ID"]))] += 1
    return found


def digest_send(config_file: Path, *extra: str) -> subprocess.Popen[str]:
    """A real `syndicator digest send` process on that config, its output captured."""
    return subprocess.Popen(
        [sys.executable, "-m", "syndicator", "digest", "send", "--config", str(config_file), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip

"""The `smtp` transport: digests leave through one SMTP server, over a few reused connections.

Up to `max_connections` workers each hold a connection and take messages from a shared queue; a
token bucket spaces messages at `rate_per_second` across all of them. A message is claimed just
before its first try and reported once. A 4xx reply, a dropped connection or a timeout is tried
again (`tries` in all, exponential backoff with jitter, on a fresh connection when the old one is
gone), then left `temporary` for the next run. A 5xx reply is `bad_mailbox` when it says the
recipient's address is wrong (5.1.x), else `failed`.

Refusals of us as a sender stop the run (`RunStopped`): a 5.7.x reply (policy, authentication),
a failed login, a server that does not offer the STARTTLS we asked for, a TLS handshake or
certificate that fails. Nothing ever falls back to plain text. Once stopped, no message is
claimed any more; those already on the wire finish and are reported (a refused one as
`temporary`, so that nobody is suppressed), then `RunStopped` is raised.

Within `async with transport.connections():` the connections (and the token bucket's pace)
outlive each `send` and serve the next one (a run's batches), instead of a STARTTLS handshake
and a login per batch; they are closed when the block ends, and one left idle for more than
`IDLE` seconds is not used again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import re
import socket
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

from aiosmtplib import (
    SMTP,
    SMTPAuthenticationError,
    SMTPConnectError,
    SMTPException,
    SMTPHeloError,
    SMTPResponse,
    SMTPResponseException,
    SMTPServerDisconnected,
    SMTPTimeoutError,
)

from syndicator.mail.transports import Claim, Done, OutboxTransport, Outgoing, Result, RunStopped, Transport

if TYPE_CHECKING:
    from syndicator.config.model import Config

log = logging.getLogger(__name__)

Verdict = Literal["temporary", "failed", "bad_mailbox", "stop"]
Stage = Literal["connect", "mail", "rcpt", "data"]

# `5.1.1` at the start of a reply's text: RFC 3463 class.subject.detail.
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?![\d.])")
_AUTH_CODES = frozenset({530, 534, 535, 538})  # RFC 4954 replies, for servers without 5.7.x codes
_SENDER_DETAILS = frozenset({7, 8})  # 5.1.7 and 5.1.8 are about the sender's address, not ours to fix
_LOOPBACK = frozenset({"localhost", "127.0.0.1", "::1"})
IDLE = 10.0  # seconds a kept connection may wait for the next `send`: far below servers' timeouts


class Secret:
    """A password that never shows in a repr, a log line or a traceback; `reveal()` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"{type(self).__name__}('**********')"

    __str__ = __repr__


def classify(code: int, text: str, *, stage: Stage) -> Verdict:
    """What a reply other than success means for a message, given the command it answered."""
    if not 500 <= code < 600:
        return "temporary"  # 4xx, and replies aiosmtplib could not parse (code -1)
    enhanced = _ENHANCED.match(text.strip())
    subject, detail = (int(enhanced[2]), int(enhanced[3])) if enhanced else (None, None)
    if stage == "connect" or subject == 7 or code in _AUTH_CODES:
        return "stop"
    if subject == 1:
        if stage == "mail" or detail in _SENDER_DETAILS:
            return "stop"  # our sender address is refused: every message would be
        return "bad_mailbox"
    return "failed"


class Pace(Protocol):
    """Spaces messages: a `TokenBucket` in this process, or one shared by several (the send
    workers' rate, kept in the database)."""

    async def take(self, interrupt: asyncio.Event) -> bool: ...

    def give_back(self) -> None: ...


class TokenBucket:
    """Spaces events at `rate` per second across every task sharing it, bursts of `burst` at most.

    Only a task that needs a token waits, and only as long as the rate requires."""

    def __init__(self, rate: float, *, burst: float = 1.0) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, not {rate!r}")
        self.rate, self.capacity = rate, max(1.0, burst)
        self._tokens, self._stamp = self.capacity, time.monotonic()
        self._lock = asyncio.Lock()  # waiters are served first come, first served

    async def take(self, interrupt: asyncio.Event) -> bool:
        """Wait for a token and take it; False, with no token taken, once `interrupt` is set."""
        async with self._lock:
            while not interrupt.is_set():
                now = time.monotonic()
                self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
                self._stamp = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return True
                await _sleep((1 - self._tokens) / self.rate, interrupt)
            return False

    def give_back(self) -> None:
        """Return a token that was taken for nothing."""
        self._tokens = min(self.capacity, self._tokens + 1)


async def _sleep(seconds: float, interrupt: asyncio.Event) -> None:
    """Sleep `seconds`, or less if `interrupt` is set meanwhile."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(interrupt.wait(), seconds)


class _Unavailable(Exception):
    """A connection could not be opened for a reason that may pass (refused, 4xx, timeout)."""


@dataclass(slots=True)
class _Run:
    """What the workers of one `send` share."""

    queue: deque[Outgoing]
    claim: Claim
    done: Done
    bucket: Pace
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    stopped: RunStopped | None = None
    unavailable: str | None = None  # why the last connection attempt failed, if it did

    def stop(self, error: RunStopped) -> None:
        if self.stopped is None:
            log.warning("stopping the run: %s", error.message)
            self.stopped = error
        self.stopping.set()


class SmtpTransport:
    """Delivers messages through an SMTP server, one recipient per message (see the module doc)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        starttls: bool = True,
        tls: bool = False,
        username: str | None = None,
        password: Secret | None = None,
        timeout: float = 30.0,
        verify: bool = True,
        max_connections: int = 4,
        rate_per_second: float = 20.0,
        messages_per_connection: int = 100,
        tries: int = 3,
        backoff: float = 0.5,
        local_hostname: str | None = None,
        source: str | None = None,
    ) -> None:
        """`timeout` bounds opening a connection (TLS and login included) and each message;
        `tries` counts the first; `backoff` is the first delay between tries, then doubled;
        `local_hostname` is what EHLO says (default: this machine's FQDN); `source` names the
        config file in errors."""
        if min(max_connections, messages_per_connection, tries) < 1 or min(timeout, backoff) < 0:
            raise ValueError(
                "max_connections, messages_per_connection and tries must be at least 1, "
                "timeout and backoff not negative"
            )
        self.host, self.port = host, port
        self.tls = tls
        self.starttls = starttls and not tls  # implicit TLS has nothing to upgrade
        self.username, self.password = username, password
        self.timeout, self.verify = timeout, verify
        self.max_connections, self.rate_per_second = max_connections, rate_per_second
        self.messages_per_connection, self.tries, self.backoff = messages_per_connection, tries, backoff
        self.local_hostname, self.source = local_hostname, source
        self._tls_context: ssl.SSLContext | None = None
        self._random = random.Random()
        self._keeping = False
        self._bucket: TokenBucket | None = None  # kept with the connections, across sends
        self.pace: Pace | None = None  # set: it spaces the messages instead of `rate_per_second` here
        self._idle: list[tuple[SMTP, int, float]] = []  # kept: connection, messages sent, since
        if username is not None and not (tls or starttls) and host.lower() not in _LOOPBACK:
            raise RunStopped(
                f"will not send the SMTP password to {self.address} over plain text; "
                "set email.smtp.starttls or email.smtp.tls",
                path=source,
            )

    @classmethod
    def from_config(cls, config: Config, *, environ: Mapping[str, str] | None = None) -> SmtpTransport:
        """The transport `email.smtp` describes, with the login read from the variables it names."""
        smtp, email = config.email.smtp, config.email
        environ = os.environ if environ is None else environ
        found: dict[str, str | None] = {}
        for key in ("username_env", "password_env"):
            variable = getattr(smtp, key)
            if variable and variable not in environ:
                raise RunStopped(
                    f"email.smtp.{key} names ${variable}, which is not set; export it before running",
                    path=config.source,
                    line=config.line_of(["email", "smtp", key]),
                )
            found[key] = environ[variable] if variable else None
        username, password = found["username_env"], found["password_env"]
        if password is not None and username is None:
            raise RunStopped(
                "email.smtp.password_env is set but email.smtp.username_env is not",
                path=config.source,
                line=config.line_of(["email", "smtp", "password_env"]),
            )
        return cls(
            smtp.host,
            smtp.port,
            starttls=smtp.starttls,
            tls=smtp.tls,
            username=username,
            password=None if password is None else Secret(password),
            timeout=smtp.timeout,
            verify=smtp.verify,
            max_connections=email.max_connections,
            rate_per_second=email.rate_per_second,
            messages_per_connection=email.messages_per_connection,
            source=config.source,
        )

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def security(self) -> str:
        return "tls" if self.tls else "starttls" if self.starttls else "none"

    def __repr__(self) -> str:
        return (
            f"SmtpTransport(host={self.host!r}, port={self.port}, security={self.security!r}, "
            f"verify={self.verify}, username={self.username!r}, password={self.password!r}, "
            f"max_connections={self.max_connections}, rate_per_second={self.rate_per_second})"
        )

    async def send(self, messages: Sequence[Outgoing], *, claim: Claim, done: Done) -> None:
        """Deliver `messages`, calling `claim` right before each and `done` once per claimed one."""
        if not messages:
            return
        if self.local_hostname is None:
            self.local_hostname = await asyncio.to_thread(socket.getfqdn)
        bucket: Pace
        if self.pace is not None:
            bucket = self.pace
        else:
            bucket = self._bucket if self._keeping and self._bucket else TokenBucket(self.rate_per_second)
            if self._keeping:
                self._bucket = bucket  # the pace carries over from one batch to the next
        run = _Run(deque(messages), claim, done, bucket)
        workers = [
            asyncio.create_task(self._worker(run), name=f"smtp-{number}")
            for number in range(min(self.max_connections, len(messages)))
        ]
        try:
            await asyncio.gather(*workers)
        except BaseException:
            for worker in workers:
                worker.cancel()
            await asyncio.gather(*workers, return_exceptions=True)
            raise
        if run.stopped is not None:
            raise run.stopped
        if run.queue:
            raise self._stopped(
                f"cannot reach the SMTP server {self.address} ({run.unavailable}); "
                f"{len(run.queue)} messages were left for the next run"
            )

    @contextlib.asynccontextmanager
    async def connections(self) -> AsyncIterator[None]:
        """Keep connections open from one `send` to the next while the block runs."""
        self._keeping = True
        try:
            yield
        finally:
            self._keeping, self._bucket = False, None
            idle, self._idle = self._idle, []
            await asyncio.gather(*(self._quit(client) for client, _, _ in idle))

    def _kept(self) -> tuple[SMTP | None, int]:
        """A connection an earlier `send` left open, with its count of messages; else (None, 0)."""
        while self._idle:
            client, used, since = self._idle.pop()
            if client.is_connected and time.monotonic() - since < IDLE:
                return client, used
            client.close()
        return None, 0

    async def _worker(self, run: _Run) -> None:
        """Send messages from the queue over one connection, renewed as needed, until none is left.

        A message's `done` is written while the worker claims the next one and sends its
        envelope, but always before that one's DATA: at most one message per worker is on the
        wire or accepted and not yet on record."""
        client, used = self._kept()
        reporting: asyncio.Future[None] | None = None  # the previous message's `done`, being written
        try:
            while run.queue and not run.stopping.is_set():
                if client is None or not client.is_connected or used >= self.messages_per_connection:
                    await self._quit(client)
                    client, used = await self._open_with_retries(run), 0
                    if client is None:
                        break
                if not await run.bucket.take(run.stopping):
                    break
                if not run.queue or run.stopping.is_set():
                    run.bucket.give_back()
                    break
                message = run.queue.popleft()
                if not await run.claim(message):
                    run.bucket.give_back()
                    continue
                written = reporting  # the previous message's outcome: on record before this DATA

                async def ready(written: asyncio.Future[None] | None = written) -> None:
                    if written is not None:
                        await written

                client, result = await self._deliver(run, client, message, ready)
                await ready()
                used += 1
                reporting = asyncio.ensure_future(run.done(message, result))
            if reporting is not None:
                await reporting
        except BaseException:
            if client is not None:
                client.close()
            if reporting is not None:  # the outcome is written whatever stops this worker
                await asyncio.wait([reporting])
            raise
        usable = client is not None and client.is_connected and used < self.messages_per_connection
        if self._keeping and usable and not run.stopping.is_set():
            assert client is not None
            self._idle.append((client, used, time.monotonic()))
        else:
            await self._quit(client)

    async def _deliver(
        self, run: _Run, client: SMTP | None, message: Outgoing, ready: Callable[[], Awaitable[None]]
    ) -> tuple[SMTP | None, Result]:
        """Try a claimed message until it has a fate; the connection to go on with, and the result.
        `ready()` returns once its DATA may go (see `_try_once`)."""
        detail = ""
        for attempt in range(1, self.tries + 1):
            if attempt > 1:
                if run.stopping.is_set():
                    break
                delay = self.backoff * 2 ** (attempt - 2) * self._random.uniform(0.5, 1.5)
                log.info("%s: %s; trying again in %.1f s", message.recipient, detail, delay)
                await _sleep(delay, run.stopping)
            if client is None or not client.is_connected:
                if client is not None:
                    client.close()
                client = None
                try:
                    client = await self._open()
                except _Unavailable as error:
                    detail = str(error)
                    continue
                except RunStopped as error:
                    run.stop(error)
                    return None, Result("temporary", f"not sent: {error.message}")
            verdict, detail = await self._try_once(client, message, ready)
            if verdict == "sent":
                return client, Result("sent", detail)
            if verdict == "stop":
                run.stop(self._stopped(f"{self.address} refused a message to {message.recipient}: {detail}"))
                return client, Result("temporary", f"not sent, the run stopped: {detail}")
            if verdict != "temporary":
                return client, Result(verdict, detail)
        return client, Result("temporary", detail)

    async def _try_once(
        self, client: SMTP, message: Outgoing, ready: Callable[[], Awaitable[None]]
    ) -> tuple[Verdict | Literal["sent"], str]:
        """Send one message once: MAIL and RCPT, then DATA once `ready()` has returned (the
        previous message's outcome is on record by then: the wait is hidden behind the envelope's
        round trips); the verdict and the server's words. Each stage has `timeout` seconds.

        What `ready()` raises is raised, the envelope given up: the message is not sent."""
        addresses = message.sender + message.recipient
        utf8 = not addresses.isascii()
        if utf8 and not client.supports_extension("smtputf8"):
            return "failed", f"{self.address} does not offer SMTPUTF8, needed for {message.recipient}"
        options = ["SMTPUTF8"] if utf8 else []
        if client.supports_extension("size"):  # RFC 1870; the bytes are CRLF already
            options.insert(0, f"SIZE={len(message.data)}")
        encoding = "utf-8" if utf8 else "ascii"
        reply = await self._exchange(
            client, "mail", client.mail(message.sender, options=options, encoding=encoding)
        )
        if isinstance(reply, SMTPResponse):
            reply = await self._exchange(client, "rcpt", client.rcpt(message.recipient, encoding=encoding))
        if not isinstance(reply, SMTPResponse):  # refused: the verdict and why
            return reply
        try:
            await ready()
        except BaseException:
            client.close()  # an envelope is open: this connection is out of step now
            raise
        reply = await self._exchange(client, "data", client.data(message.data))
        return ("sent", reply.message) if isinstance(reply, SMTPResponse) else reply

    async def _exchange(
        self, client: SMTP, stage: Stage, command: Awaitable[SMTPResponse]
    ) -> SMTPResponse | tuple[Verdict, str]:
        """Run one stage of a message within `timeout`: the server's reply if it took it, else the
        verdict and the server's words (the envelope reset, or the connection closed)."""
        try:
            async with asyncio.timeout(self.timeout):
                return await command
        except SMTPResponseException as error:
            if error.code == 421:  # the server is closing this connection
                client.close()
            elif stage != "data":
                await self._reset(client)
            return classify(error.code, error.message, stage=stage), _reply(error)
        except (SMTPServerDisconnected, SMTPTimeoutError, TimeoutError, OSError) as error:
            client.close()  # whatever the server got, this connection is out of step now
            return "temporary", f"connection lost: {self._why(error)}"
        except (SMTPException, ValueError) as error:  # an address SMTP cannot carry
            if stage != "mail":
                await self._reset(client)
            return "failed", str(error)

    async def _reset(self, client: SMTP) -> None:
        """RSET after a refused envelope, so that the connection can carry the next message."""
        try:
            async with asyncio.timeout(self.timeout):
                await client.rset()
        except (SMTPException, OSError, TimeoutError) as error:
            log.debug("RSET to %s: %s", self.address, error)
            client.close()

    async def _open_with_retries(self, run: _Run) -> SMTP | None:
        """A new connection, tried `tries` times; None when the run stops or the server stays away."""
        for attempt in range(1, self.tries + 1):
            if run.stopping.is_set():
                return None
            try:
                return await self._open()
            except RunStopped as error:
                run.stop(error)
                return None
            except _Unavailable as error:
                run.unavailable = str(error)
                log.info("cannot connect to %s: %s", self.address, error)
            if attempt < self.tries:
                await _sleep(self.backoff * 2 ** (attempt - 1) * self._random.uniform(0.5, 1.5), run.stopping)
        return None

    async def _open(self) -> SMTP:
        """A connection ready for mail: greeted, in TLS as configured, logged in.

        Raises `RunStopped` when the server refuses us, `_Unavailable` when that may pass."""
        client = SMTP(
            hostname=self.host,
            port=self.port,
            use_tls=self.tls,
            start_tls=False,  # never the library's default, which goes on in plain text without it
            tls_context=await self._context() if self.tls or self.starttls else None,
            local_hostname=self.local_hostname,
            # None: every exchange here is bounded by `asyncio.timeout(self.timeout)` already; the
            # library's own would put a second timer on every reply (bench/rss2email.py, at 0 ms).
            timeout=None,
        )
        try:
            async with asyncio.timeout(self.timeout):
                await client.connect()
                await self._hello(client)
                if self.starttls:
                    if not client.supports_extension("starttls"):
                        raise self._stopped(
                            f"{self.address} does not offer STARTTLS, so the digests would go in plain "
                            "text; refusing (set email.smtp.starttls: false only for a local relay)"
                        )
                    await client.starttls()
                    await self._hello(client)
                if self.username is not None:
                    if not client.supports_extension("auth"):
                        raise self._stopped(f"{self.address} offers no AUTH, but a username is configured")
                    password = self.password.reveal() if self.password is not None else ""
                    await client.login(self.username, password)
        except Exception as error:
            client.close()
            meaning = self._opening_error(error)
            if meaning is error:
                raise
            raise meaning from error
        except BaseException:
            client.close()
            raise
        log.debug("connected to %s (%s)", self.address, self.security)
        return client

    def _opening_error(self, error: Exception) -> Exception:
        """What an error while opening a connection means: stop the run, or try again later."""
        if isinstance(error, RunStopped):
            return error
        failure = _ssl_error(error)
        if failure is not None:
            return self._stopped(
                f"TLS with {self.address} failed ({failure}); check the server's certificate and "
                "email.smtp.tls/starttls, or set email.smtp.verify: false for a self-signed one"
            )
        if isinstance(error, SMTPResponseException):
            if classify(error.code, error.message, stage="connect") == "stop":
                login = isinstance(error, SMTPAuthenticationError)
                what = f"the login of {self.username!r}" if login else "us"
                return self._stopped(f"{self.address} refused {what}: {_reply(error)}")
            return _Unavailable(_reply(error))
        if isinstance(error, SMTPServerDisconnected | SMTPTimeoutError | SMTPConnectError | OSError):
            return _Unavailable(self._why(error))
        if isinstance(error, SMTPException):  # no AUTH method in common, for one
            return self._stopped(f"{self.address}: {error}")
        return error

    async def _hello(self, client: SMTP) -> None:
        """EHLO, so that the server's extensions are known; HELO to a server without ESMTP."""
        try:
            await client.ehlo()
        except SMTPHeloError as error:
            if error.code < 500 or self.starttls or self.username is not None:
                raise
            await client.helo()  # enough to relay in plain text, which is what was configured

    async def _context(self) -> ssl.SSLContext:
        """The TLS context of every connection, built once (loading CA certificates reads files)."""
        if self._tls_context is None:
            self._tls_context = await asyncio.to_thread(_tls_context, verify=self.verify)
        return self._tls_context

    async def _quit(self, client: SMTP | None) -> None:
        """Say QUIT and close, whatever the server answers."""
        if client is None:
            return
        try:
            if client.is_connected:
                async with asyncio.timeout(self.timeout):
                    await client.quit()
        except (SMTPException, OSError, TimeoutError) as error:
            log.debug("QUIT to %s: %s", self.address, error)
        finally:
            client.close()

    def _why(self, error: Exception) -> str:
        """A connection error in words; asyncio's own timeouts have none."""
        if str(error):
            return str(error)
        return (
            f"no answer within {self.timeout:g} s"
            if isinstance(error, TimeoutError)
            else type(error).__name__
        )

    def _stopped(self, message: str) -> RunStopped:
        hint = "nobody was suppressed; the digests not sent are left for the next run"
        return RunStopped(message, path=self.source, hint=hint)


def _tls_context(*, verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _ssl_error(error: BaseException) -> ssl.SSLError | None:
    """The TLS failure behind an error, if one is (aiosmtplib wraps some, not all)."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def _reply(error: SMTPResponseException) -> str:
    return f"{error.code} {' '.join(error.message.split())}"


def transport_for(config: Config) -> Transport:
    """The transport `email.transport` names."""
    if config.email.transport == "smtp":
        return SmtpTransport.from_config(config)
    return OutboxTransport(config.resolve(config.email.outbox))

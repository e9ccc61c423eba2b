"""The web app's own limits, whether or not a proxy stands in front: request bodies, forms,
headers, slow clients, connections, and a cookie reader that does not go through `http.cookies`.

- Bodies: `BodyLimit` (an ASGI middleware) answers 413 when a request announces or sends more
  than its route allows (`BODY_LIMITS`), reading no further, and 408 when the body arrives
  slower than `BODY_TIMEOUT` allows in all. Nothing is read into memory before it counts.
- Forms: `read_form()` parses with a field count and a field size (`FORM_FIELDS`,
  `FIELD_SIZE`) and no files.
- Headers, slow clients, connections: `server_config()` runs uvicorn on h11 (httptools has no
  limit on the size of the headers) with `HEADER_SIZE`, a keep-alive timeout, a concurrency
  limit, and `HeaderTimeoutProtocol`: uvicorn has no timeout for reading the request line and
  headers (its keep-alive timer stops at the first byte), so a connection that has not sent a
  whole request head within `HEADER_TIMEOUT` is closed.
- Cookies: Starlette's `request.cookies` unquotes every value with `http.cookies._unquote`, which
  Python 3.11.7 runs in quadratic time on crafted values (CVE-2024-7592). `cookie()` reads one
  cookie by name, in linear time, and gives no quoted value back.
- Proxies: X-Forwarded-For is believed only from `web.trusted_proxies`; with none listed,
  `UntrustedForwarding` says once in the log that a request carried it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

import anyio
import uvicorn
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

log = logging.getLogger(__name__)

# Bytes a request body may hold, by the first segment of its path; others get DEFAULT_BODY.
# The preferences and sign-up forms carry a few hundred checkboxes at most.
BODY_LIMITS: Mapping[str, int] = {"subscribe": 64 * 1024, "preferences": 64 * 1024}
DEFAULT_BODY = 8 * 1024  # unsubscribe (a button, or RFC 8058's one line), confirmation buttons
BODY_TIMEOUT = 20.0  # seconds to receive a whole body
FORM_FIELDS = 600  # fields in one form
FIELD_SIZE = 4 * 1024  # bytes in one field
HEADER_SIZE = 16 * 1024  # bytes of request line and headers
HEADER_TIMEOUT = 10.0  # seconds to send them
KEEP_ALIVE = 5  # seconds an idle connection is kept
MAX_CONNECTIONS = 200  # open connections and requests in progress; then 503


# The body left unread is not drained: the connection closes after the answer.
CLOSE = {"Connection": "close"}
Refuse = Callable[[Request, int], Response]  # the app's error page for a status


def body_limit(path: str) -> int:
    """The bytes a request body on `path` may hold."""
    return BODY_LIMITS.get(path.lstrip("/").split("/", 1)[0], DEFAULT_BODY)


def head_size(scope: Scope) -> int:
    """About the bytes of a request's line and headers as they came."""
    line = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") + 16
    return line + sum(len(name) + len(value) + 4 for name, value in scope["headers"])


class BodyLimit:
    """ASGI middleware: a request line and headers over `HEADER_SIZE` are answered 431 (h11's
    own limit only holds for a head that arrives in pieces: one sent at once, up to the size
    of a read, gets through it). A body larger than its route allows is answered 413 (the French page),
    a body slower than `BODY_TIMEOUT` 408. An announced `Content-Length` over the limit is
    answered by `refuse` (the app's error page) before the app runs; a body found too large
    or too slow while the app reads it raises the HTTPException the app's handler turns into
    its page. Any answer sent while part of the body is unread closes the connection, so
    that the server does not go on reading (and discarding) what the app never wanted."""

    def __init__(self, app: ASGIApp, *, refuse: Refuse, timeout: float = BODY_TIMEOUT) -> None:
        self.app = app
        self.refuse = refuse
        self.timeout = timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if head_size(scope) > HEADER_SIZE:
            response = self.refuse(Request(scope), 431)
            response.headers.update(CLOSE)
            await response(scope, receive, send)
            return
        limit = body_limit(scope["path"])
        headers = dict(scope["headers"])
        announced = headers.get(b"content-length")
        if announced is not None and (not announced.isdigit() or int(announced) > limit):
            response = self.refuse(Request(scope), 413)
            response.headers.update(CLOSE)
            await response(scope, receive, send)
            return
        unread = bool(announced and announced != b"0") or b"transfer-encoding" in headers
        received = 0
        deadline: float | None = None

        async def limited() -> Message:
            nonlocal received, deadline, unread
            if deadline is None:
                deadline = anyio.current_time() + self.timeout
            try:
                with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(408, headers=CLOSE) from None
            received += len(message.get("body", b""))
            if received > limit:
                raise HTTPException(413, headers=CLOSE)
            if not message.get("more_body", False):
                unread = False
            return message

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start" and unread:
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, limited, closing)


class UntrustedForwarding:
    """ASGI middleware for an app that believes no proxy: says once in the log that a request
    came with X-Forwarded-For (nginx in front, not listed in `web.trusted_proxies`), since
    every visitor then shares the proxy's address and its sign-up limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.warned = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        forwarded = scope["type"] == "http" and any(
            name == b"x-forwarded-for" for name, _ in scope["headers"]
        )
        if forwarded and not self.warned:
            self.warned = True
            client = scope.get("client")
            log.warning(
                "X-Forwarded-For from %s ignored: if it is your proxy, list it in config.yaml's "
                "web.trusted_proxies, or every visitor shares its address (and its sign-up limit)",
                client[0] if client else "an unknown peer",
            )
        await self.app(scope, receive, send)


async def read_form(request: Request) -> FormData:
    """The posted form, parsed within `FORM_FIELDS` and `FIELD_SIZE`, without files; else 413."""
    try:
        return await request.form(max_files=0, max_fields=FORM_FIELDS, max_part_size=FIELD_SIZE)
    except HTTPException as exc:
        if exc.status_code == 400:  # Starlette's answer to a form over its limits
            raise HTTPException(413, headers=CLOSE) from None
        raise


def cookie(request: Request, name: str) -> str | None:
    """The value of cookie `name` (the first one sent), read in linear time; None if absent."""
    for header, value in request.scope["headers"]:
        if header != b"cookie":
            continue
        text: str = value.decode("latin-1")
        for chunk in text.split(";"):
            key, equals, found = chunk.partition("=")
            if equals and key.strip() == name:
                return found.strip()
    return None


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing a connection that takes more than `HEADER_TIMEOUT` to
    send the head of a request (the first one, or the next on a kept-alive connection)."""

    header_timeout = HEADER_TIMEOUT

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(self.header_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _too_slow(self) -> None:
        self._head_timer = None
        if self.cycle is None or self.cycle.response_complete:  # no request under way
            self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a whole request head arrived
            self._disarm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()


def server_config(app: ASGIApp, *, host: str = "127.0.0.1", port: int = 8080,
                  trusted_proxies: list[str] | None = None, access_log: bool = False,
                  log_level: str = "info", header_timeout: float = HEADER_TIMEOUT,
                  max_connections: int = MAX_CONNECTIONS) -> uvicorn.Config:  # fmt: skip
    """uvicorn's settings for the app, with the limits above. `X-Forwarded-For` and
    `X-Forwarded-Proto` are read only from `trusted_proxies` (none: never)."""
    protocol = type("HeaderTimeout", (HeaderTimeoutProtocol,), {"header_timeout": header_timeout})
    if not trusted_proxies:
        app = UntrustedForwarding(app)
    return uvicorn.Config(
        app, host=host, port=port, http=protocol, ws="none", lifespan="on",
        h11_max_incomplete_event_size=HEADER_SIZE, timeout_keep_alive=KEEP_ALIVE,
        limit_concurrency=max_connections, proxy_headers=bool(trusted_proxies),
        forwarded_allow_ips=list(trusted_proxies or []), server_header=False,
        log_level=log_level, access_log=access_log,
    )  # fmt: skip

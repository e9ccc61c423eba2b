"""`syndicator serve`: the web app for feed readers and subscribers (Starlette under uvicorn).

Routes and wiring only; what each page does is in its own module:

    /feeds/...                  the generated feeds (syndicator/feeds/server.py)
    /unsubscribe/<token>        syndicator/web/unsubscribe.py
    /preferences/<token>        syndicator/web/preferences.py
    /subscribe...               the sign-up (syndicator/web/signup.py)

Pages, their templates and CSRF are in syndicator/web/pages.py. Errors of every kind come out
as French pages (`templates/web/error.html`) that show no detail.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from syndicator.config.model import Config
from syndicator.db.store import Store
from syndicator.feeds.server import feeds_app
from syndicator.web.export import export_page
from syndicator.web.limits import BODY_TIMEOUT, BodyLimit, server_config
from syndicator.web.pages import ERRORS, PageError, WebState, error_page
from syndicator.web.preferences import preferences
from syndicator.web.privacy import ROUTE as PRIVACY_ROUTE
from syndicator.web.privacy import privacy_page
from syndicator.web.signup import signup_routes
from syndicator.web.unsubscribe import unsubscribe

log = logging.getLogger(__name__)


async def _http_error(request: Request, exc: Exception) -> Response:
    if isinstance(exc, PageError):
        page = error_page(request, exc.status_code, exc.title, exc.message)
        page.headers.update(exc.headers or {})  # a 429's Retry-After
        return page
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    response = error_page(request, status if status in ERRORS else 500)
    if isinstance(exc, HTTPException) and exc.headers:
        response.headers.update(exc.headers)  # a 405's Allow
    return response


def route_of(request: Request) -> str:
    """The route a request matched, as declared (`/unsubscribe/{token}`): what a log may name,
    since the path itself carries the token."""
    route = request.scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else "(no route)"


async def _server_error(request: Request, exc: Exception) -> Response:
    log.error("error on %s %s", request.method, route_of(request), exc_info=exc)
    try:
        return error_page(request, 500)
    except Exception:  # the error page itself failed (an admin's broken template): plain words
        log.exception("the error page could not be rendered")
        return PlainTextResponse("Erreur du serveur. Réessayez dans quelques minutes.", status_code=500)


async def _home(request: Request) -> Response:
    # Relative, so that it holds when a proxy publishes the app under a path.
    return RedirectResponse("feeds/", status_code=303)


def create_app(
    config: Config, *, store_url: str | None = None, body_timeout: float = BODY_TIMEOUT
) -> Starlette:
    """The web app: opens the store (`store_url`, default config.yaml's `database`) now, so a
    bad database fails at start, and closes it when the server stops. A request body must
    arrive within `body_timeout` seconds (syndicator/web/limits.py)."""
    store = Store.open(store_url or config.database_url)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            store.close()

    routes: list[BaseRoute] = [
        Route("/", _home, methods=["GET", "HEAD"]),
        Mount("/feeds", app=feeds_app(config)),
        Route("/unsubscribe/{token}", unsubscribe, methods=["GET", "HEAD", "POST"]),
        Route("/preferences/{token}", preferences, methods=["GET", "HEAD", "POST"]),
        *signup_routes(),
        Route(PRIVACY_ROUTE, privacy_page, methods=["GET", "HEAD"]),
        Route("/export/{token}", export_page, methods=["GET", "HEAD", "POST"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(BodyLimit, refuse=error_page, timeout=body_timeout)],
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _server_error},
    )
    app.state.web = WebState.build(config, store)
    return app


def serve(config: Config, host: str, port: int, *, access_log: bool = False) -> None:
    """Run the app under uvicorn until SIGTERM or SIGINT, with its limits
    (syndicator/web/limits.py). X-Forwarded-For and X-Forwarded-Proto are trusted only from
    `web.trusted_proxies`.

    No access log unless asked (`serve -v`): links in emails of the first releases carry
    readable addresses (syndicator/db/tokens.py)."""
    settings = server_config(
        create_app(config), host=host, port=port, trusted_proxies=config.web.trusted_proxies,
        access_log=access_log,
    )  # fmt: skip
    uvicorn.Server(settings).run()

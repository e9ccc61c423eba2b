"""`/unsubscribe/<token>`: the page behind every digest's unsubscribe link and List-Unsubscribe.

GET only shows a confirmation page with a button and changes nothing: mail scanners and link
previews follow links. POST unsubscribes at once: the page's button (with its CSRF token), or
RFC 8058's one-click POST a mail program sends on its own (body `List-Unsubscribe=One-Click`,
no cookie, no CSRF token: the signed token in the URL is what proves the request comes from
the mailbox). The address goes to the suppression list with the reason "unsubscribed";
unsubscribing again changes nothing and says the same.
"""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from .choices import UNSUBSCRIBED
from .ledger import Ledger
from .tokens import Signer
from .web_pages import PageError, page, verified_form, web_state

ONE_CLICK = b"List-Unsubscribe=One-Click"


def token_address(request: Request) -> str:
    """The address the URL's unsubscribe token was made for; `PageError(400)` if it is not ours."""
    email = Signer(web_state(request).keys, "unsubscribe").read(request.path_params["token"])
    if email is None:
        raise PageError(400)
    return email


async def _is_one_click(request: Request) -> bool:
    """Whether the POST is RFC 8058's: `List-Unsubscribe=One-Click`, urlencoded or multipart."""
    if (await request.body()).strip() == ONE_CLICK:
        return True
    return (await request.form()).get("List-Unsubscribe") == "One-Click"


def _suppressed(ledger: Ledger, email: str) -> bool:
    entry = ledger.suppressed().get(email)
    return entry is not None


async def unsubscribe(request: Request) -> Response:
    """Confirm (GET) or do (POST) the unsubscription of the token's address."""
    email = token_address(request)
    state = web_state(request)
    ledger = Ledger(state.store)
    preferences = (
        f"{state.config.web.base_url.rstrip('/')}/preferences/{Signer(state.keys, 'preferences').sign(email)}"
    )
    if request.method in ("GET", "HEAD"):
        done = await run_in_threadpool(_suppressed, ledger, email)
        template = "web/unsubscribe_done.html" if done else "web/unsubscribe.html"
        return page(request, template, {"email": email, "preferences": preferences, "already": done})
    if await _is_one_click(request):
        detail = "one-click (RFC 8058)"
    else:
        await verified_form(request)
        detail = "web page"
    already = await run_in_threadpool(_suppressed, ledger, email)
    if not already:
        await run_in_threadpool(ledger.suppress, email, UNSUBSCRIBED, datetime.now(UTC), detail)
    return page(request, "web/unsubscribe_done.html", {"email": email, "preferences": preferences,
                                                         "already": already})  # fmt: skip

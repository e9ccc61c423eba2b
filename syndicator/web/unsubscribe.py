"""`/unsubscribe/<token>`: the page behind every digest's unsubscribe link and List-Unsubscribe.

GET only shows a confirmation page with a button and changes nothing: mail scanners and link
previews follow links. POST unsubscribes at once: the page's button (with its CSRF token), or
RFC 8058's one-click POST a mail program sends on its own (body `List-Unsubscribe=One-Click`,
no cookie, no CSRF token: the signed token in the URL is what proves the request comes from
the mailbox). The address goes to the suppression list with the reason "unsubscribed";
unsubscribing again changes nothing and says the same.

Whoever opens the link (a forwarded email's reader, a colleague) sees the address masked
(`cl•••@example.org`). Once unsubscribed, the page offers its own button to subscribe again
(POST `action=resubscribe`, with its CSRF token): it lifts only the address's own
unsubscription, never a bounce or a complaint, and nothing else on the page resubscribes
(the preferences link is not shown there).
"""

from __future__ import annotations

from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from syndicator.db.choices import UNSUBSCRIBED
from syndicator.db.ledger import Ledger
from syndicator.db.tokens import AddressTokens
from syndicator.web.limits import read_form
from syndicator.web.pages import PageError, page, verified_form, web_state

ONE_CLICK = b"List-Unsubscribe=One-Click"


def token_address(request: Request) -> str:
    """The address the URL's unsubscribe token was made for; `PageError(400)` if it is not ours."""
    email = AddressTokens(web_state(request).keys, "unsubscribe").open(request.path_params["token"])
    if email is None:
        raise PageError(400)
    return email


def masked(email: str) -> str:
    """The address as the page shows it: `cl•••@example.org` (one letter of a short name,
    none of a one-letter one)."""
    local, _, domain = email.rpartition("@")
    shown = local[:2] if len(local) > 3 else local[:1] if len(local) > 1 else ""
    return f"{shown}•••@{domain}"


async def _is_one_click(request: Request) -> bool:
    """Whether the POST is RFC 8058's: `List-Unsubscribe=One-Click`, urlencoded or multipart."""
    if (await request.body()).strip() == ONE_CLICK:
        return True
    return (await read_form(request)).get("List-Unsubscribe") == "One-Click"


def _suppressed(ledger: Ledger, email: str) -> bool:
    entry = ledger.suppressed().get(email)
    return entry is not None


def _resubscribe(ledger: Ledger, email: str) -> bool:
    """Lift the address's unsubscription; False when it is suppressed for another reason."""
    entry = ledger.suppressed().get(email)
    if entry is not None and entry[0] != UNSUBSCRIBED:
        return False
    if entry is not None:
        ledger.unsuppress(email)
    return True


async def unsubscribe(request: Request) -> Response:
    """Confirm (GET) or do (POST) the unsubscription of the token's address."""
    email = token_address(request)
    state = web_state(request)
    ledger = Ledger(state.store)
    token = AddressTokens(state.keys, "preferences").seal(email)
    preferences = f"{state.config.web.base_url.rstrip('/')}/preferences/{token}"
    context = {"email": masked(email), "preferences": preferences}
    if request.method in ("GET", "HEAD"):
        done = await run_in_threadpool(_suppressed, ledger, email)
        template = "web/unsubscribe_done.html" if done else "web/unsubscribe.html"
        return page(request, template, {**context, "already": done})
    if await _is_one_click(request):
        detail = "one-click (RFC 8058)"
    else:
        form = await verified_form(request)
        detail = "web page"
        if form.get("action") == "resubscribe":
            resubscribed = await run_in_threadpool(_resubscribe, ledger, email)
            return page(request, "web/resubscribed.html", {**context, "resubscribed": resubscribed})
    already = await run_in_threadpool(_suppressed, ledger, email)
    if not already:
        await run_in_threadpool(ledger.suppress, email, UNSUBSCRIBED, datetime.now(UTC), detail)
    return page(request, "web/unsubscribe_done.html", {**context, "already": already})

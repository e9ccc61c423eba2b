"""`/preferences/<token>`: a subscriber chooses frequency, thématiques, territoires and types.

GET shows the form with the current choice (config.yaml's, or their own stored one) ticked;
`?q=` adds the territoires matching a search. POST (with its CSRF token) either searches
(`action=search`: the form comes back as ticked, nothing saved) or validates and saves the
choice in `subscriber_choices`, where it wins over config.yaml, then shows what was saved.
Saving the preferences of an address that unsubscribed subscribes it again: the page says so
on its button. An address that receives nothing (not in config.yaml, no confirmed sign-up)
gets a page saying so, and nothing is stored for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response

from syndicator.config.subscribers import Subscriber
from syndicator.db.choices import UNSUBSCRIBED, save_choice
from syndicator.db.ledger import Ledger
from syndicator.db.subscribers import effective_subscriber
from syndicator.db.tokens import AddressTokens
from syndicator.web.choices import FREQUENCY_LABELS, Chosen, choice_form, read_choice
from syndicator.web.export import export_link
from syndicator.web.pages import PageError, WebState, page, verified_form, web_state


@dataclass(frozen=True, slots=True)
class _Current:
    """The address's subscription as it stands, and the links of its pages."""

    email: str
    subscriber: Subscriber | None
    suppressed: str | None  # the reason, when the address receives nothing
    preferences: str
    unsubscribe: str
    export: str  # the page that mails the address its data


def _current(state: WebState, email: str) -> _Current:
    web = state.config.web.base_url.rstrip("/")
    suppressed = Ledger(state.store).suppressed().get(email)
    return _Current(
        email=email,
        subscriber=effective_subscriber(state.config, state.store, email),
        suppressed=suppressed[0] if suppressed else None,
        preferences=f"{web}/preferences/{AddressTokens(state.keys, 'preferences').seal(email)}",
        unsubscribe=f"{web}/unsubscribe/{AddressTokens(state.keys, 'unsubscribe').seal(email)}",
        export=export_link(state.config, state.keys, email),
    )


def _save(state: WebState, current: _Current, subscriber: Subscriber) -> bool:
    """Store the choice; True when it ended an unsubscription."""
    save_choice(state.store, subscriber, now=datetime.now(UTC))
    if current.suppressed == UNSUBSCRIBED:
        Ledger(state.store).unsuppress(current.email)
        return True
    return False


def _form_page(request: Request, current: _Current, chosen: Chosen, *, query: str,
               problems: list[str], status: int = 200) -> Response:  # fmt: skip
    state = web_state(request)
    choices = choice_form(state.store, state.hierarchy, chosen, query=query)
    return page(request, "web/preferences.html", {
        "email": current.email, "choices": choices, "problems": problems,
        "suppressed": current.suppressed, "unsubscribe": current.unsubscribe, "export": current.export,
    }, status=status)  # fmt: skip


async def _posted(request: Request, current: _Current, subscriber: Subscriber, form: FormData) -> Response:
    state = web_state(request)
    chosen, problems = await run_in_threadpool(
        read_choice, form, state.store, state.hierarchy, Chosen.of(subscriber)
    )
    query = str(form.get("q") or "")
    if form.get("action") == "search":
        return await run_in_threadpool(_form_page, request, current, chosen, query=query, problems=problems)
    if problems:
        return await run_in_threadpool(
            _form_page, request, current, chosen, query=query, problems=problems, status=400
        )
    resubscribed = await run_in_threadpool(_save, state, current, chosen.applied(subscriber))
    return page(request, "web/preferences_saved.html", {
        "email": current.email, "frequency": FREQUENCY_LABELS[chosen.frequency],
        "thematiques": chosen.thematiques, "territoires": chosen.territoires, "types": chosen.types,
        "resubscribed": resubscribed, "preferences": current.preferences,
        "unsubscribe": current.unsubscribe,
    })  # fmt: skip


async def preferences(request: Request) -> Response:
    """Show (GET), search or save (POST) the preferences of the token's address."""
    state = web_state(request)
    email = AddressTokens(state.keys, "preferences").open(request.path_params["token"])
    if email is None:
        raise PageError(400)
    current = await run_in_threadpool(_current, state, email)
    subscriber = current.subscriber
    if subscriber is None:
        subscribe = state.config.web.base_url.rstrip("/") + "/subscribe"
        return page(request, "web/preferences_unknown.html", {"email": email, "subscribe": subscribe})
    if request.method == "POST":
        return await _posted(request, current, subscriber, await verified_form(request))
    query = request.query_params.get("q", "")
    return await run_in_threadpool(
        _form_page, request, current, Chosen.of(subscriber), query=query, problems=[]
    )

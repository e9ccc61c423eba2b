"""`/subscribe`: the sign-up form, and `/subscribe/confirm/<token>`, its confirmation (double opt-in).

GET /subscribe shows the form: address, name (optional), frequency and interests, the consent
text with its box. POST (with its CSRF token) either searches the territoires (`action=search`
with a query: the form comes back as ticked, nothing stored) or checks the form, records a
request (syndicator/db/signups.py: expiry, rate limits) and mails its confirmation link
through the configured transport (syndicator/web/signup_email.py). The page then says to look in
the mailbox, the same whether the address was subscribed already or not, so that the form
tells no one who subscribes.

GET /subscribe/confirm/<token> shows what will be confirmed and a button, and changes nothing:
mail scanners follow links. POST (the button, with its CSRF token) confirms: the subscriber is
stored with the proof of consent. Confirming twice says so and changes nothing; a link past
its 48 hours, or superseded by a newer request, gets a page offering to start again; a
tampered link gets the 400 page.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from math import ceil
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from syndicator.config.subscribers import Subscriber
from syndicator.db.signups import (
    EXPIRY,
    LIMITS,
    Confirmation,
    ConfirmTokens,
    Limit,
    RateLimited,
    SignupRequest,
    check_address,
    clean_name,
    client_ip,
    confirm,
    create_request,
    forget_request,
    pending,
)
from syndicator.db.tokens import AddressTokens
from syndicator.mail.messages import UnsafeHeaders
from syndicator.mail.transports import Outgoing, Result
from syndicator.privacy.consent import Wording, archive, consent_wording
from syndicator.web.choices import FREQUENCY_LABELS, Chosen, choice_form, read_choice
from syndicator.web.pages import PageError, WebState, page, verified_form, web_state
from syndicator.web.signup_email import confirmation_email, outgoing, send

log = logging.getLogger(__name__)
HOURS = int(EXPIRY.total_seconds() // 3600)
CONSENT_CHANGED = (
    "Le texte d’accord a changé depuis l’ouverture de la page : relisez-le, puis cochez la case."
)


def french_delay(delay: timedelta) -> str:
    """`12 minutes`, `3 heures`: a wait, rounded up, as a page says it."""
    minutes = max(1, ceil(delay.total_seconds() / 60))
    if minutes < 90:
        return f"{minutes} minute{'s' if minutes > 1 else ''}"
    return f"{ceil(minutes / 60)} heures"


def _urls(state: WebState) -> tuple[str, str]:
    """The web app's base URL, and the sign-up form's."""
    web = state.config.web.base_url.rstrip("/")
    return web, f"{web}/subscribe"


@dataclass(frozen=True, slots=True)
class _Typed:
    """What the visitor typed and ticked outside the interests, given back to a form shown again."""

    email: str = ""
    name: str = ""
    consented: bool = False

    @classmethod
    def of(cls, form: FormData) -> _Typed:
        return cls(str(form.get("email") or ""), str(form.get("name") or ""), form.get("consent") == "yes")


def _form_page(request: Request, typed: _Typed, chosen: Chosen, wording: Wording, *, query: str = "",
               errors: Mapping[str, str] | None = None, problems: Sequence[str] = (),
               status: int = 200) -> Response:  # fmt: skip
    state = web_state(request)
    choices = choice_form(state.store, state.hierarchy, chosen, query=query)
    errors = errors or {}
    return page(request, "web/subscribe.html", {
        "email": typed.email, "name": typed.name, "consented": typed.consented, "consent": wording,
        "choices": choices, "errors": {"email": "", "name": "", "consent": "", **errors},
        "problems": [*errors.values(), *problems], "hours": HOURS,
    }, status=status)  # fmt: skip


def _check(form: FormData, typed: _Typed, wording: Wording) -> tuple[str | None, str | None, dict[str, str]]:
    """The address and name to store, and the problems of each field, in French."""
    errors: dict[str, str] = {}
    email, problem = check_address(typed.email)
    if problem:
        errors["email"] = problem
    name, problem = clean_name(typed.name)
    if problem:
        errors["name"] = problem
    if not typed.consented:
        errors["consent"] = "Cochez la case d’accord pour vous inscrire."
    elif form.get("wording") != wording.version:
        # The text changed while the page was open: the proof must name the text they read.
        errors["consent"] = CONSENT_CHANGED
    return email, name, errors


async def _subscribe_posted(request: Request, form: FormData) -> Response:
    state = web_state(request)
    wording = consent_wording(state.env, state.config.site)
    chosen, problems = await run_in_threadpool(read_choice, form, state.store, state.hierarchy)
    typed = _Typed.of(form)
    query = str(form.get("q") or "").strip()
    if form.get("action") == "search" and query:
        return await run_in_threadpool(_form_page, request, typed, chosen, wording, query=query)
    email, name, errors = _check(form, typed, wording)
    if errors or problems or email is None:
        if "consent" in errors:
            typed = replace(typed, consented=False)
        return await run_in_threadpool(
            _form_page, request, typed, chosen, wording, query=query, errors=errors, problems=problems,
            status=400,
        )  # fmt: skip
    subscriber = chosen.applied(Subscriber(email=email, name=name))
    ip = client_ip(request.client.host if request.client else None)
    limits = replace(LIMITS, site=Limit(state.config.web.signups_per_hour, timedelta(hours=1)))
    try:
        signup = await run_in_threadpool(
            create_request, state.store, subscriber, ip=ip, wording=wording.version, now=datetime.now(UTC),
            limits=limits, notice=state.config.privacy.notice_version,
        )  # fmt: skip
    except RateLimited as limited:
        log.info("sign-up refused: too many requests for this %s", limited.scope)
        context = {"scope": limited.scope, "delay": french_delay(limited.retry_after)}
        response = page(request, "web/subscribe_limited.html", context, status=429)
        response.headers["Retry-After"] = str(ceil(limited.retry_after.total_seconds()))
        return response
    await run_in_threadpool(archive, state.store, wording)
    return await _mail(request, signup, typed, chosen, wording)


async def _mail(request: Request, signup: SignupRequest, typed: _Typed, chosen: Chosen,
                wording: Wording) -> Response:  # fmt: skip
    """Send the request's confirmation email and say so; a request whose email could not be
    sent is forgotten (it neither counts nor lingers)."""
    state = web_state(request)
    web, subscribe_url = _urls(state)
    confirm_url = f"{web}/subscribe/confirm/{ConfirmTokens(state.keys).seal(signup)}"

    def build() -> Outgoing:
        message = confirmation_email(
            state.env, state.config, signup, confirm_url=confirm_url, subscribe_url=subscribe_url
        )
        return outgoing(state.config, signup, message)

    try:
        built = await run_in_threadpool(build)
    except UnsafeHeaders as exc:  # a header the checks caught: that request's failure, nothing sent
        result = Result("failed", str(exc))
    else:
        result = await send(state.config, built)
    if result.outcome == "sent":
        log.info("sign-up request %d: confirmation email sent", signup.id)
        context = {"email": signup.subscriber.email, "hours": HOURS, "subscribe": subscribe_url}
        return page(request, "web/subscribe_sent.html", context)
    log.warning("sign-up request %d: confirmation email not sent (%s): %s", signup.id, result.outcome,
                result.detail)  # fmt: skip
    await run_in_threadpool(forget_request, state.store, signup.id)
    if result.outcome == "bad_mailbox":
        errors = {"email": "La messagerie de cette adresse la refuse : vérifiez-la."}
        return await run_in_threadpool(_form_page, request, typed, chosen, wording, errors=errors, status=400)
    return page(request, "web/subscribe_failed.html", {"subscribe": subscribe_url}, status=503)


async def subscribe(request: Request) -> Response:
    """The sign-up form (GET), its territoire search or its sending (POST)."""
    if request.method == "POST":
        return await _subscribe_posted(request, await verified_form(request))
    state = web_state(request)
    wording = consent_wording(state.env, state.config.site)
    query = request.query_params.get("q", "")
    return await run_in_threadpool(_form_page, request, _Typed(), Chosen("weekly"), wording, query=query)


def _chosen(subscriber: Subscriber) -> dict[str, Any]:
    return {"frequency": FREQUENCY_LABELS[subscriber.frequency], "thematiques": subscriber.thematiques,
            "territoires": subscriber.territoires, "types": subscriber.types}  # fmt: skip


def _outcome_page(request: Request, found: Confirmation) -> Response:
    state = web_state(request)
    web, subscribe_url = _urls(state)
    if found.outcome == "expired":
        return page(request, "web/subscribe_expired.html", {"subscribe": subscribe_url, "hours": HOURS},
                    status=410)  # fmt: skip
    preferences = f"{web}/preferences/{AddressTokens(state.keys, 'preferences').seal(found.email)}"
    context: dict[str, Any] = {"email": found.email, "already": found.outcome == "already",
                               "preferences": preferences, "chosen": None}  # fmt: skip
    if found.request is not None and found.outcome == "confirmed":
        context["email"] = found.request.subscriber.email
        context["chosen"] = _chosen(found.request.subscriber)
    return page(request, "web/subscribe_done.html", context)


async def confirm_signup(request: Request) -> Response:
    """Show (GET) or do (POST) the confirmation of the token's sign-up."""
    state = web_state(request)
    token = ConfirmTokens(state.keys).open(request.path_params["token"])
    if token is None:
        raise PageError(400)
    now = datetime.now(UTC)
    if request.method == "POST":
        await verified_form(request)
        return _outcome_page(request, await run_in_threadpool(confirm, state.store, token, now))
    found = await run_in_threadpool(pending, state.store, token, now)
    if isinstance(found, Confirmation):
        return _outcome_page(request, found)
    subscriber = found.subscriber
    context = {"email": subscriber.email, "name": subscriber.name or "", **_chosen(subscriber)}
    return page(request, "web/subscribe_confirm.html", context)


def signup_routes() -> list[BaseRoute]:
    """The sign-up's routes, for syndicator/web/app.py."""
    return [
        Route("/subscribe", subscribe, methods=["GET", "HEAD", "POST"]),
        Route("/subscribe/confirm/{token}", confirm_signup, methods=["GET", "HEAD", "POST"]),
    ]

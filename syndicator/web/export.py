"""`/export/<token>`: a subscriber asks, from their preferences page, for a copy of their data.

The link is sealed for its own purpose (syndicator/db/tokens.py), like the unsubscribe and
preferences links. GET shows a button and changes nothing (mail scanners follow links); POST
(with its CSRF token) mails the export of `subscribers export` (syndicator/privacy/export.py),
as a JSON attachment, to the token's address and nowhere else, then says so. Requests are
rate-limited as sign-ups are (per mailbox, per IP, and for the whole site, from the
`export_requests` table, so that several web workers agree): each one mails an address.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime
from math import ceil

from sqlalchemy import delete, func, insert, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from syndicator.config.model import Config
from syndicator.db.schema import export_requests
from syndicator.db.signups import LIMITS, Limit, Limits, RateLimited, client_ip, mailbox_key
from syndicator.db.store import Store
from syndicator.db.tokens import AddressTokens
from syndicator.mail.dkim import dkim_key, sign
from syndicator.mail.messages import address, addressed, to_bytes
from syndicator.mail.transports import Outgoing
from syndicator.privacy.export import export
from syndicator.web.pages import PageError, page, verified_form, web_state
from syndicator.web.signup_email import send

log = logging.getLogger(__name__)
KEEP = timedelta(days=1)  # the longest window of the limits


def export_link(config: Config, keys: list[str], email: str) -> str:
    """The URL of the page that mails `email` its data."""
    return f"{config.web.base_url.rstrip('/')}/export/{AddressTokens(keys, 'export').seal(email)}"


def record_request(store: Store, email: str, *, ip: str, now: datetime, limits: Limits = LIMITS) -> int:
    """Count a request for the export of `email`; `RateLimited` (nothing recorded) when the
    mailbox, the IP or the site asked too often. Its number, for the message's name."""
    key = mailbox_key(email)
    with store.writing() as connection:
        connection.execute(delete(export_requests).where(export_requests.c.created < now - KEEP))
        scopes = (
            ("address", limits.address, export_requests.c.subscriber == key),
            ("ip", limits.ip, export_requests.c.ip == ip),
            ("site", limits.site, None),
        )
        for scope, limit, same in scopes:
            query = select(func.min(export_requests.c.created), func.count()).where(
                export_requests.c.created > now - limit.window, *([] if same is None else [same])
            )
            oldest, count = connection.execute(query).one()
            if count >= limit.count:
                raise RateLimited(scope, max(oldest + limit.window - now, timedelta(seconds=1)))  # type: ignore[arg-type]
        inserted = connection.execute(
            insert(export_requests).values(subscriber=key, ip=ip, created=now)
        ).inserted_primary_key
    return int(inserted[0]) if inserted else 0


def export_email(
    config: Config, email: str, data: dict[str, object], *, number: int, now: datetime
) -> Outgoing:
    """The message carrying the export, as a transport takes it."""
    title = config.site.title
    to, policy = addressed("", email)
    message = EmailMessage(policy=policy)
    message["From"] = address(config.email.from_)
    message["To"] = to
    message["Subject"] = f"Vos données personnelles — {title}"
    message["Date"] = format_datetime(now)
    hashed = hashlib.sha256(f"{email} {now.isoformat()}".encode()).hexdigest()[:12]
    mid = f"<export.{number}.{hashed}@{address(config.email.from_).domain or 'syndicator.invalid'}>"
    message["Message-ID"] = mid
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(
        "Bonjour,\n\n"
        f"Vous avez demandé une copie des données que {title} détient sur l’adresse {email}. "
        "Elles sont dans le fichier joint, au format JSON : votre inscription, vos choix, la preuve "
        "de votre consentement et la liste des lettres envoyées, avec leurs actualités.\n\n"
        "Si vous n’êtes pas à l’origine de cette demande, vous pouvez ignorer ce message : il n’a été "
        "envoyé qu’à cette adresse.\n\n"
        f"-- \n{title} — {config.site.base_url}\n",
        charset="utf-8",
        cte="quoted-printable",
    )
    attached = json.dumps(data, ensure_ascii=False, indent=2).encode()
    message.add_attachment(
        attached, maintype="application", subtype="json", filename="donnees-personnelles.json"
    )
    raw = to_bytes(message)
    key = dkim_key(config)
    return Outgoing(
        data=sign(raw, key) if key else raw,
        sender=config.email.from_,
        recipient=str(to.addr_spec),
        message_id=mid,
        name=f"export-{number}",
    )


async def export_page(request: Request) -> Response:
    """Show (GET) the button, or mail (POST) the token's address its data."""
    state = web_state(request)
    email = AddressTokens(state.keys, "export").open(request.path_params["token"])
    if email is None:
        raise PageError(400)
    if request.method != "POST":
        return page(request, "web/export.html", {"email": email})
    await verified_form(request)
    now = datetime.now(UTC)
    ip = client_ip(request.client.host if request.client else None)
    limits = replace(LIMITS, site=Limit(state.config.web.signups_per_hour, timedelta(hours=1)))
    try:
        number = await run_in_threadpool(record_request, state.store, email, ip=ip, now=now, limits=limits)
    except RateLimited as limited:
        log.info("export refused: too many requests for this %s", limited.scope)
        error = PageError(429)
        error.headers = {"Retry-After": str(ceil(limited.retry_after.total_seconds()))}
        raise error from None
    data = await run_in_threadpool(export, state.config, state.store, email, now=now)
    if data is None:
        return page(request, "web/export_sent.html", {"email": email, "sent": False, "nothing": True})
    built = await run_in_threadpool(export_email, state.config, email, data, number=number, now=now)
    result = await send(state.config, built)
    log.info("export request %d: %s", number, result.outcome)
    sent = result.outcome == "sent"
    return page(request, "web/export_sent.html", {"email": email, "sent": sent, "nothing": False},
                status=200 if sent else 503)  # fmt: skip

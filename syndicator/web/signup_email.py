"""The sign-up confirmation email: built from templates, then sent through the configured transport.

Building is pure (`confirmation_email`): the same request and link give the same bytes, with a
Message-ID of its own per request. The templates, which admins may override, are
`signup_email_subject.txt`, `signup_email.txt` (rendered without HTML escaping) and
`signup_email.html`. It is a transactional message, not a list message: no List-Unsubscribe,
no `Precedence: bulk`. Sending goes through the transport `email.transport` names (outbox
folder or SMTP, `mail.smtp.transport_for`), DKIM-signed when `email.dkim` is set.
"""

from __future__ import annotations

import asyncio
import hashlib
from email.message import EmailMessage
from email.utils import format_datetime
from functools import lru_cache

from jinja2 import Environment

from syndicator.addresses import as_typed, on_the_wire
from syndicator.config.model import Config
from syndicator.db.signups import EXPIRY, SignupRequest
from syndicator.mail.dkim import dkim_key, sign
from syndicator.mail.messages import address, addressed, header_text, to_bytes
from syndicator.mail.smtp import transport_for
from syndicator.mail.transports import Outgoing, Result, RunStopped, Transport
from syndicator.privacy.notice import notice
from syndicator.templating import french_datetime
from syndicator.web.choices import FREQUENCY_LABELS

SUBJECT_TEMPLATE = "signup_email_subject.txt"
TEXT_TEMPLATE = "signup_email.txt"
HTML_TEMPLATE = "signup_email.html"
# The visitor waits for the sending: a relay that hangs must not hold the page for minutes.
SEND_TIMEOUT = 30.0


@lru_cache(maxsize=8)
def _text_env(env: Environment) -> Environment:
    """`env` without HTML escaping, for the subject and the text part; its own template cache,
    so a template compiled with escaping on is never reused."""
    return env.overlay(autoescape=False, trim_blocks=True, lstrip_blocks=True, cache_size=20)


def message_id(request: SignupRequest, sender: str) -> str:
    """The Message-ID of a request's confirmation email."""
    hashed = hashlib.sha256(f"{request.subscriber.key} {request.created.isoformat()}".encode()).hexdigest()
    return f"<signup.{request.id}.{hashed[:12]}@{address(sender).domain or 'syndicator.invalid'}>"


def confirmation_email(
    env: Environment, config: Config, request: SignupRequest, *, confirm_url: str, subscribe_url: str
) -> EmailMessage:
    """The email asking to confirm a sign-up: text part then HTML part."""
    subscriber = request.subscriber
    name = header_text(subscriber.name or "")  # one line, in the greeting as in the To header
    context = {
        "site": config.site,
        "greeting": f"Bonjour {name}," if name else "Bonjour,",
        "email": as_typed(subscriber.email),
        "name": name,
        "confirm_url": confirm_url,
        "subscribe_url": subscribe_url,
        "hours": int(EXPIRY.total_seconds() // 3600),
        "expires": french_datetime(request.expires, zone=config.site.zone),
        "frequency": FREQUENCY_LABELS[subscriber.frequency],
        "thematiques": subscriber.thematiques,
        "territoires": subscriber.territoires,
        "types": subscriber.types,
        "privacy": notice(config),
    }
    text_env = _text_env(env)
    subject = header_text(text_env.get_template(SUBJECT_TEMPLATE).render(context))
    text = text_env.get_template(TEXT_TEMPLATE).render({**context, "subject": subject})
    html = env.get_template(HTML_TEMPLATE).render({**context, "subject": subject})
    mid = message_id(request, config.email.from_)
    to, policy = addressed(name, subscriber.email)
    message = EmailMessage(policy=policy)
    message["From"] = address(config.email.from_)
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = format_datetime(request.created)
    message["Message-ID"] = mid
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text, charset="utf-8", cte="quoted-printable")
    message.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
    message.set_boundary("=_" + hashlib.sha256(mid.encode()).hexdigest()[:32])
    return message


def outgoing(config: Config, request: SignupRequest, message: EmailMessage) -> Outgoing:
    """The message as a transport takes it, DKIM-signed when `email.dkim` is set."""
    data = to_bytes(message)
    key = dkim_key(config)
    return Outgoing(
        data=sign(data, key) if key else data,
        sender=config.email.from_,
        recipient=on_the_wire(request.subscriber.email),
        message_id=str(message["Message-ID"]),
        name=f"signup-{request.id}",
    )


async def send(config: Config, message: Outgoing, transport: Transport | None = None) -> Result:
    """Deliver one message now (`transport`, default the configured one); what became of it.
    A refusal of us as a sender (`RunStopped`) or an unusable transport is a `failed` result,
    a relay still busy after `SEND_TIMEOUT` seconds a `temporary` one."""
    results: list[Result] = []

    async def claim(_: Outgoing) -> bool:
        return True

    async def done(_: Outgoing, result: Result) -> None:
        results.append(result)

    try:
        async with asyncio.timeout(SEND_TIMEOUT):
            await (transport or transport_for(config)).send([message], claim=claim, done=done)
    except RunStopped as exc:
        return Result("failed", str(exc))
    except TimeoutError:
        return Result("temporary", f"not sent within {SEND_TIMEOUT} s")
    return results[0] if results else Result("temporary", "the transport did not send it")

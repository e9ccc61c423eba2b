"""Digest emails as bytes: stdlib `email` with `policy=SMTP`, multipart/alternative, UTF-8.

Pure: the same digest, Message-ID and date give the same bytes (the MIME boundary derives from
the Message-ID). Nothing an item or the config says can put a CR or LF in a header: every
header value is cleaned of control characters before it is set.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import format_datetime, parseaddr

from .digest import RenderedDigest

_CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029]+")


class _UrlListHeader(UnstructuredHeader):
    """RFC 2369's `<url>, <url>`: folded after its commas, never made an encoded-word, which
    the policy would do to a line this long and mail programs would then not read."""

    def fold(self, *, policy: Policy) -> str:
        linesep = policy.linesep or "\r\n"
        name = self.name  # type: ignore[attr-defined]  # HeaderRegistry mixes BaseHeader in
        return f"{name}: " + f",{linesep} ".join(str(self).split(", ")) + linesep


_HEADERS = HeaderRegistry()
_HEADERS.map_to_type("list-unsubscribe", _UrlListHeader)  # type: ignore[arg-type]  # as above
_POLICY = SMTP.clone(header_factory=_HEADERS)


def header_text(value: str) -> str:
    """`value` on one line: control characters (CR, LF, tab...) become single spaces."""
    return " ".join(_CONTROL.sub(" ", value).split())


def address(text: str) -> Address:
    """An `Address` from `Name <user@host>` or a bare address, display name cleaned."""
    name, addr = parseaddr(header_text(text))
    user, _, domain = addr.rpartition("@")
    return Address(display_name=header_text(name), username=user, domain=domain)


def message_id(digest_id: int, subscriber: str, sender: str) -> str:
    """A Message-ID that is the same every time this digest is delivered."""
    digest = hashlib.sha256(subscriber.encode()).hexdigest()[:12]
    return f"<digest.{digest_id}.{digest}@{address(sender).domain or 'syndicator.invalid'}>"


@dataclass(frozen=True, slots=True)
class Envelope:
    """The headers of a digest email that do not come from its content."""

    sender: str  # `email.from`
    recipient: str
    recipient_name: str | None
    message_id: str
    date: datetime
    list_name: str  # the site title
    unsubscribe_url: str


def build_message(rendered: RenderedDigest, envelope: Envelope) -> EmailMessage:
    """The email of a rendered digest: text part then HTML part, with list headers."""
    sender = address(envelope.sender)
    message = EmailMessage(policy=_POLICY)
    message["From"] = sender
    message["To"] = Address(
        display_name=header_text(envelope.recipient_name or ""),
        addr_spec=header_text(envelope.recipient),
    )
    message["Subject"] = header_text(rendered.subject)
    message["Date"] = format_datetime(envelope.date)
    message["Message-ID"] = envelope.message_id
    message["List-Id"] = f"{header_text(envelope.list_name)} <digest.{sender.domain}>"
    mailto = f"mailto:{sender.addr_spec}?subject=unsubscribe"
    message["List-Unsubscribe"] = f"<{header_text(envelope.unsubscribe_url)}>, <{mailto}>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message["Auto-Submitted"] = "auto-generated"
    message["Precedence"] = "bulk"
    message.set_content(rendered.text, charset="utf-8", cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    message.set_boundary("=_" + hashlib.sha256(envelope.message_id.encode()).hexdigest()[:32])
    return message


def to_bytes(message: EmailMessage) -> bytes:
    """The message as it goes on the wire: CRLF line ends, no line over 998 characters."""
    return message.as_bytes(policy=_POLICY)

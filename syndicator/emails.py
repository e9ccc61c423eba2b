"""Digest emails as bytes: stdlib `email` with `policy=SMTP`, multipart/alternative, UTF-8.

The `To:` address has its domain in IDNA (`xn--`); a local part that is not ASCII makes the
headers raw UTF-8 (RFC 6532), for a relay that offers SMTPUTF8.

Pure: the same digest, Message-ID and date give the same bytes (the MIME boundary derives from
the Message-ID). Nothing an item or the config says can put a CR or LF in a header: every
header value is cleaned of control characters before it is set.

`build_message` makes the `EmailMessage`; `digest_bytes` makes the very same bytes as
`to_bytes(build_message(...))` for the thousands of digests of a run, at a fraction of the cost
(tests/test_render.py holds the two equal): a header value that recurs (From, Subject, Date,
List-Id...) is folded by the stdlib once, the values proper to each subscriber are written as
they are when they are plain and short enough that folding leaves them so (else the stdlib
folds them), and the parts are quoted-printable line by line with the stdlib's own encoder,
each distinct line encoded once.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from email import quoprimime
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import format_datetime, parseaddr
from functools import lru_cache

from .addresses import needs_smtputf8, on_the_wire
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
# For a recipient whose local part is not ASCII: headers in raw UTF-8 (RFC 6532), which only
# travels where the relay offers SMTPUTF8 (the transport checks).
_UTF8_POLICY = _POLICY.clone(utf8=True)


def header_text(value: str) -> str:
    """`value` on one line: control characters (CR, LF, tab...) become single spaces."""
    return " ".join(_CONTROL.sub(" ", value).split())


@lru_cache(maxsize=256)  # the sender's, parsed for every message of a run
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
    recipient = on_the_wire(header_text(envelope.recipient))
    message = EmailMessage(policy=_UTF8_POLICY if needs_smtputf8(recipient) else _POLICY)
    message["From"] = sender
    message["To"] = _recipient(header_text(envelope.recipient_name or ""), recipient)
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
    return message.as_bytes(policy=_UTF8_POLICY if getattr(message.policy, "utf8", False) else _POLICY)


def _recipient(name: str, recipient: str) -> Address:
    """The `To:` address, from its parts: the stdlib would refuse to parse a local part that
    is not ASCII, which the UTF-8 policy writes as it is."""
    user, _, domain = recipient.rpartition("@")
    return Address(display_name=name, username=user, domain=domain)


def addressed(name: str, recipient: str) -> tuple[Address, Policy]:
    """The `To:` address of `recipient` (its domain in IDNA) and the policy a message to it is
    made and written with: UTF-8 headers when its local part is not ASCII."""
    wire = on_the_wire(header_text(recipient))
    return _recipient(header_text(name), wire), _UTF8_POLICY if needs_smtputf8(wire) else _POLICY


# --- the same bytes, quickly ---------------------------------------------------------------------

_CRLF = "\r\n"
_WIDTH = _POLICY.max_line_length or 78
# Values the stdlib writes out unchanged when their line fits: a display name of words, a
# dot-atom address, a Message-ID of dot-atoms, printable ASCII with no encoded word.
_WORDS = re.compile(r"[A-Za-z0-9'-]+(?: [A-Za-z0-9'-]+)*")
_ATOMS = r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*"
_ADDR_SPEC = re.compile(rf"{_ATOMS}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*")
_MSG_ID = re.compile(rf"<{_ATOMS}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*>")
_PLAIN = re.compile(r"[ -~]*")
_PART_HEADERS = 'Content-Type: text/{}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n'
_QP_KEPT = 50_000  # distinct lines kept encoded before the cache starts afresh
_qp_lines: dict[bytes, bytes] = {}


@lru_cache(maxsize=1024)
def _folded(name: str, value: str) -> str:
    """The header as the stdlib writes it, for a value that recurs from message to message."""
    return str(_POLICY.header_factory(name, value).fold(policy=_POLICY))


@lru_cache(maxsize=64)
def _sender(sender: str) -> tuple[str, str, str]:
    """The From header of `email.from`, its address and its domain."""
    parsed = address(sender)
    header = str(_POLICY.header_factory("From", parsed).fold(policy=_POLICY))
    return header, parsed.addr_spec, parsed.domain


def _to(name: str, recipient: str) -> str:
    if _ADDR_SPEC.fullmatch(recipient) and (not name or _WORDS.fullmatch(name)):
        line = f"To: {name} <{recipient}>" if name else f"To: {recipient}"
        if len(line) <= _WIDTH:
            return line + _CRLF
    value = _recipient(name, recipient)
    return str(_POLICY.header_factory("To", value).fold(policy=_POLICY))


def _message_id(value: str) -> str:
    line = f"Message-ID: {value}"
    if len(line) <= _WIDTH and _MSG_ID.fullmatch(value):
        return line + _CRLF
    return str(_POLICY.header_factory("Message-ID", value).fold(policy=_POLICY))


def _unsubscribe(value: str) -> str:
    if _PLAIN.fullmatch(value) and "=?" not in value:  # as _UrlListHeader folds it
        return "List-Unsubscribe: " + f",{_CRLF} ".join(value.split(", ")) + _CRLF
    return str(_POLICY.header_factory("List-Unsubscribe", value).fold(policy=_POLICY))


def _quoted_printable(text: str) -> bytes:
    """`text` as the stdlib's quoted-printable body of a part, CRLF line ends: its encoder works
    line by line, so each line is encoded alone, once."""
    global _qp_lines  # noqa: PLW0603 -- a cache, started afresh when full
    if len(_qp_lines) > _QP_KEPT:
        _qp_lines = {}
    encoded = []
    for line in text.encode("utf-8").splitlines() or [b""]:  # no text is one empty line
        done = _qp_lines.get(line)
        if done is None:
            qp = quoprimime.body_encode(line.decode("latin-1") + "\n", _WIDTH)
            done = _qp_lines[line] = qp.replace("\n", _CRLF).encode("ascii")
        encoded.append(done)
    return b"".join(encoded)


def digest_bytes(rendered: RenderedDigest, envelope: Envelope) -> bytes:
    """Exactly `to_bytes(build_message(rendered, envelope))`, made without an `EmailMessage`
    (with one, for the rare recipient whose local part is not ASCII)."""
    recipient = on_the_wire(header_text(envelope.recipient))
    if needs_smtputf8(recipient):
        return to_bytes(build_message(rendered, envelope))
    from_header, sender_addr, domain = _sender(envelope.sender)
    mailto = f"mailto:{sender_addr}?subject=unsubscribe"
    boundary = "=_" + hashlib.sha256(envelope.message_id.encode()).hexdigest()[:32]
    headers = (
        from_header,
        _to(header_text(envelope.recipient_name or ""), recipient),
        _folded("Subject", header_text(rendered.subject)),
        _folded("Date", format_datetime(envelope.date)),
        _message_id(envelope.message_id),
        _folded("List-Id", f"{header_text(envelope.list_name)} <digest.{domain}>"),
        _unsubscribe(f"<{header_text(envelope.unsubscribe_url)}>, <{mailto}>"),
        _folded("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        _folded("Auto-Submitted", "auto-generated"),
        _folded("Precedence", "bulk"),
        f'MIME-Version: 1.0\r\nContent-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n',
        f"--{boundary}\r\n{_PART_HEADERS.format('plain')}\r\n",
    )
    html_headers = f"\r\n--{boundary}\r\n{_PART_HEADERS.format('html')}MIME-Version: 1.0\r\n\r\n"
    return b"".join(
        (
            "".join(headers).encode("ascii"),
            _quoted_printable(rendered.text),
            html_headers.encode("ascii"),
            _quoted_printable(rendered.html),
            f"\r\n--{boundary}--\r\n".encode("ascii"),
        )
    )

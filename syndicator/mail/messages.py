"""Digest emails as bytes: stdlib `email` with `policy=SMTP`, multipart/alternative, UTF-8.

The `To:` address has its domain in IDNA (`xn--`); a local part that is not ASCII makes the
headers raw UTF-8 (RFC 6532), for a relay that offers SMTPUTF8.

Pure: the same digest, Message-ID and date give the same bytes (the MIME boundary derives from
the Message-ID). Nothing an item, a subscriber or the config says can add a header or end the
header block, on two counts:

- every value is cleaned by `header_text` before it is set: control characters become spaces,
  and `=?`, which would open an RFC 2047 encoded word, becomes `= ?`. Python before 3.11.10 and
  3.12.5 decodes encoded words when it folds a header (CVE-2024-6923): a display name
  `=?utf-8?q?=0D=0AReply-To:_x@evil.test?=` was written as a line break and a header of its own;
- the finished header block is checked (`check_headers`) before anything signs or sends it: every
  line a header field or its folded continuation, and the block, parsed again, the very headers
  the message was built with. A message that fails raises `UnsafeHeaders`, and is never sent.

`build_message` makes the `EmailMessage`; `digest_bytes` makes the very same bytes as
`to_bytes(build_message(...))` for the thousands of digests of a run, at a fraction of the cost
(tests/test_render.py holds the two equal): a header value that recurs (From, Subject, Date,
List-Id...) is folded by the stdlib once, the values proper to each subscriber are written as
they are when they are plain and short enough that folding leaves them so (else the stdlib
folds them), and the parts are quoted-printable line by line with the stdlib's own encoder,
each distinct line encoded once. Kept for `digest send`'s targets (bench/smtp.py: A2 no lower
than 126–174 digests/s, B2 no lower than 99–113 msg/s; bench/rss2email.py at 0 ms, ≥ 1× rss2email
and not met): median of three runs on the shared 2-core machine, with it and with the stdlib's
message instead, A2 115 against 81 digests/s, B2 87 against 59 msg/s, and 1,000 one-item
digests at 0 ms 153 against 90 msg/s.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from email import quoprimime
from email.headerregistry import Address, HeaderRegistry, UnstructuredHeader
from email.message import EmailMessage
from email.policy import SMTP, Policy
from email.utils import format_datetime, parseaddr
from functools import lru_cache

from syndicator.addresses import needs_smtputf8, on_the_wire
from syndicator.errors import SyndicatorError

# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: none belongs in a header.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# A header line as it goes on the wire: a field name and its colon, or a folded continuation
# (white space, then something); printable ASCII (non-ASCII text is in encoded words by then).
_HEADER_LINE = re.compile(rb"[\x21-\x39\x3b-\x7e]+:[\t\x20-\x7e]*|[\t ]+[\x21-\x7e][\t\x20-\x7e]*")
# With SMTPUTF8 (RFC 6532), values may hold UTF-8 bytes too.
_UTF8_HEADER_LINE = re.compile(
    rb"[\x21-\x39\x3b-\x7e]+:[\t\x20-\x7e\x80-\xff]*|[\t ]+[\x21-\x7e\x80-\xff][\t\x20-\x7e\x80-\xff]*"
)
_MAX_LINE = 998  # RFC 5322 2.1.1, without the CRLF
ONE_CLICK = "List-Unsubscribe=One-Click"  # RFC 8058's List-Unsubscribe-Post value


@dataclass(frozen=True, slots=True)
class RenderedEmail:
    """An email's words, rendered through the templates: a one-line subject, plain text and HTML."""

    subject: str
    text: str
    html: str


class UnsafeHeaders(SyndicatorError, ValueError):
    """A message whose header block is not the one it was built with (a header added, the block
    ended early, a line malformed): it is neither signed nor sent."""


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
    """`value` on one line, fit for a header or a greeting: control characters (CR, LF, tab, C1,
    U+2028...) become spaces, runs of spaces one, and `=?` becomes `= ?`, so that no RFC 2047
    encoded word goes through for a mail program (or Python's own folding) to decode."""
    return " ".join(_CONTROL.sub(" ", value).replace("=?", "= ?").split())


def shows_as_written(value: str) -> bool:
    """Whether `header_text` leaves `value` as it is, runs of spaces aside: no control
    character, no line break, no `=?`."""
    return "=?" not in value and not _CONTROL.search(value)


def check_headers(data: bytes, expected: Sequence[tuple[str, str]], *, utf8: bool = False) -> None:
    """Raise `UnsafeHeaders` unless the header block of `data` (a message as it goes on the
    wire) is well formed and, read back, holds exactly the `expected` (name, value) headers, in
    order. A value holding an encoded word (`=?`) is compared decoded, as a mail program would
    show it; values compare with their white space aside. `utf8`: the message goes with
    SMTPUTF8, its header values may be UTF-8."""
    head, blank, _ = data.partition(b"\r\n\r\n")
    well_formed = _UTF8_HEADER_LINE if utf8 else _HEADER_LINE
    if not blank:
        raise UnsafeHeaders("the message has no end of headers")
    fields: list[list[str]] = []  # [name, unfolded value]
    for number, line in enumerate(head.split(b"\r\n"), start=1):
        if len(line) > _MAX_LINE or not well_formed.fullmatch(line) or (number == 1 and line[:1] in b" \t"):
            raise UnsafeHeaders(f"header line {number} is malformed: {line[:80]!r}")
        try:
            text = line.decode("utf-8" if utf8 else "ascii")
        except UnicodeDecodeError:
            raise UnsafeHeaders(f"header line {number} is not UTF-8: {line[:80]!r}") from None
        if text[0] in " \t":
            fields[-1][1] += text
        else:
            name, _, value = text.partition(":")
            fields.append([name, value.lstrip(" \t")])
    if [name.lower() for name, _ in fields] != [name.lower() for name, _ in expected]:
        names = ", ".join(name for name, _ in fields)
        raise UnsafeHeaders(f"the headers read back are not those built: {names}")
    for (name, value), (_, wanted) in zip(fields, expected, strict=True):
        if "=?" not in value and " ".join(value.split()) == " ".join(wanted.split()):
            continue  # as built, and no encoded word to decode: the usual case, and a quick one
        try:
            read = _read_back(name, value)
        except Exception as exc:  # the stdlib's parser raises IndexError and the like on odd input
            raise UnsafeHeaders(f"the {name} header cannot be read back: {type(exc).__name__}") from None
        # The stdlib's encoded words may read back with a space more or less between them (a
        # long name of non-Latin letters...): spaces aside, the text must be the one built.
        if _CONTROL.search(read) or "".join(read.split()) != "".join(wanted.split()):
            raise UnsafeHeaders(f"the {name} header reads back as {read!r}, not as built: {wanted!r}")


@lru_cache(maxsize=1024)
def _read_back(name: str, value: str) -> str:
    """An unfolded header value as a mail program reads it: encoded words decoded."""
    return str(_POLICY.header_factory(name, value))


@lru_cache(maxsize=256)  # the sender's, parsed for every message of a run
def address(text: str) -> Address:
    """An `Address` from `Name <user@host>` or a bare address, display name cleaned."""
    name, addr = parseaddr(header_text(text))
    user, _, domain = addr.rpartition("@")
    return Address(display_name=header_text(name), username=user, domain=domain)


def message_id(sender: str) -> str:
    """A new digest's Message-ID, random: recorded with the digest before it is sent, so that
    every delivery of it carries the same one."""
    return f"<digest.{secrets.token_hex(10)}@{address(sender).domain or 'syndicator.invalid'}>"


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


def build_message(rendered: RenderedEmail, envelope: Envelope) -> EmailMessage:
    """The email of a rendered digest: text part then HTML part, with list headers
    (`List-Unsubscribe-Post` only when the unsubscribe link is https, as RFC 8058 asks)."""
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
    unsubscribe = header_text(envelope.unsubscribe_url)
    message["List-Unsubscribe"] = f"<{unsubscribe}>, <{mailto}>"
    if one_click(unsubscribe):
        message["List-Unsubscribe-Post"] = ONE_CLICK
    message["Auto-Submitted"] = "auto-generated"
    message["Precedence"] = "bulk"
    message.set_content(rendered.text, charset="utf-8", cte="quoted-printable")
    message.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    message.set_boundary("=_" + hashlib.sha256(envelope.message_id.encode()).hexdigest()[:32])
    return message


def one_click(url: str) -> bool:
    """Whether a digest whose unsubscribe link is `url` may offer one-click unsubscription
    (`List-Unsubscribe-Post`): RFC 8058 section 3.1 wants that link https."""
    return url[:8].lower() == "https://"


def to_bytes(message: EmailMessage) -> bytes:
    """The message as it goes on the wire: CRLF line ends, no line over 998 characters; its
    header block checked (`UnsafeHeaders` when it is not the one the message was built with)."""
    utf8 = bool(getattr(message.policy, "utf8", False))
    data = message.as_bytes(policy=_UTF8_POLICY if utf8 else _POLICY)
    check_headers(data, [(name, str(value)) for name, value in message.items()], utf8=utf8)
    return data


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


@lru_cache(maxsize=1024)
def _value(name: str, value: str) -> str:
    """The value of the header as the stdlib holds it once set (a Date's offset made 4 digits...),
    for a value that recurs from message to message."""
    return str(_POLICY.header_factory(name, value))


@lru_cache(maxsize=64)
def _sender(sender: str) -> tuple[str, str, str, str]:
    """The From header of `email.from`, its value, its address and its domain."""
    parsed = address(sender)
    header = str(_POLICY.header_factory("From", parsed).fold(policy=_POLICY))
    return header, str(parsed), parsed.addr_spec, parsed.domain


def _to(name: str, recipient: str) -> tuple[str, str]:
    """The To header and its value."""
    if _ADDR_SPEC.fullmatch(recipient) and (not name or _WORDS.fullmatch(name)):
        value = f"{name} <{recipient}>" if name else recipient
        if len(value) + 4 <= _WIDTH:
            return f"To: {value}{_CRLF}", value
    parsed = _recipient(name, recipient)
    return str(_POLICY.header_factory("To", parsed).fold(policy=_POLICY)), str(parsed)


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


def digest_bytes(rendered: RenderedEmail, envelope: Envelope) -> bytes:
    """Exactly `to_bytes(build_message(rendered, envelope))`, made without an `EmailMessage`;
    its header block checked as `to_bytes` checks it. The rare recipient whose local part is
    not ASCII gets the stdlib's message."""
    recipient = on_the_wire(header_text(envelope.recipient))
    if needs_smtputf8(recipient):
        return to_bytes(build_message(rendered, envelope))
    from_header, from_value, sender_addr, domain = _sender(envelope.sender)
    to_header, to_value = _to(header_text(envelope.recipient_name or ""), recipient)
    unsubscribe_url = header_text(envelope.unsubscribe_url)
    boundary = "=_" + hashlib.sha256(envelope.message_id.encode()).hexdigest()[:32]
    values = [
        ("Subject", header_text(rendered.subject)),
        ("Date", format_datetime(envelope.date)),
        ("Message-ID", envelope.message_id),
        ("List-Id", f"{header_text(envelope.list_name)} <digest.{domain}>"),
        ("List-Unsubscribe", f"<{unsubscribe_url}>, <mailto:{sender_addr}?subject=unsubscribe>"),
        *([("List-Unsubscribe-Post", ONE_CLICK)] if one_click(unsubscribe_url) else []),
        ("Auto-Submitted", "auto-generated"),
        ("Precedence", "bulk"),
    ]
    writers = {"Message-ID": _message_id, "List-Unsubscribe": _unsubscribe}
    head = "".join(
        (
            from_header,
            to_header,
            *(writers[name](value) if name in writers else _folded(name, value) for name, value in values),
            f'MIME-Version: 1.0\r\nContent-Type: multipart/alternative;\r\n boundary="{boundary}"\r\n\r\n',
        )
    ).encode("ascii")
    plain = {"Message-ID": _MSG_ID.fullmatch, "List-Unsubscribe": _PLAIN.fullmatch}
    check_headers(
        head,
        [
            ("From", from_value),
            ("To", to_value),
            *(
                (name, value if name in plain and plain[name](value) else _value(name, value))
                for name, value in values
            ),
            ("MIME-Version", "1.0"),
            ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
        ],
    )
    first = f"--{boundary}\r\n{_PART_HEADERS.format('plain')}\r\n"
    html_headers = f"\r\n--{boundary}\r\n{_PART_HEADERS.format('html')}MIME-Version: 1.0\r\n\r\n"
    return b"".join(
        (
            head,
            first.encode("ascii"),
            _quoted_printable(rendered.text),
            html_headers.encode("ascii"),
            _quoted_printable(rendered.html),
            f"\r\n--{boundary}--\r\n".encode("ascii"),
        )
    )

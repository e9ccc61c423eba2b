"""What a message of the bounce mailbox says: a delivery failure, a complaint, an auto-reply, or
none of these. Pure: bytes in, a `Reading` out, nothing looked up.

Read in this order, the most reliable first:
1. an RFC 3464 delivery status notification (`multipart/report; report-type=delivery-status`):
   each recipient's `Action`, `Status` and `Diagnostic-Code`; a 5.x.x status is a hard
   failure, a 4.x.x one (mailbox full, `Action: delayed`) a soft one. A 5.7.x status (spam
   filter, DMARC, policy) is about the message or the sender, not the address: soft. A DSN
   carries `Auto-Submitted: auto-replied` (RFC 3834) and is still a bounce;
2. an RFC 5965 feedback report (`report-type=feedback-report`, the ARF of providers' complaint
   loops): `Feedback-Type: abuse`, `fraud`, `virus` or `other` is a complaint; `not-spam` and
   `auth-failure` are not;
3. an auto-reply by a person's mailbox (`X-Autoreply`, `X-Autorespond`, `Precedence:
   auto_reply`, an out-of-office or "Réponse automatique" subject) or a challenge-response
   ("please verify you are human"): ignored, never counted;
4. the non-standard bounces of common MTAs (Exim, qmail, older Exchange, Yahoo...) through
   Mailman's `flufl.bounce` detectors; its exceptions on odd messages are caught, never raised;
5. anything else automatic (`Auto-Submitted` other than `no`): ignored; the rest: unrecognised,
   left for a person.
"""

from __future__ import annotations

import email
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses
from typing import Literal

from flufl.bounce import all_failures

Kind = Literal["hard", "soft", "complaint", "ignored", "unrecognised"]

_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_REPLY = re.compile(r"\b([245])\d\d\b")
_COMPLAINTS = frozenset({"abuse", "fraud", "virus", "other"})
# Headers that a person's mailbox sets on its automatic answers (vacation, autoresponders).
_AUTOREPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponder", "x-mailautoreply")
_AUTOREPLY_SUBJECT = re.compile(
    r"r[ée]ponse automatique|absen(?:ce|t)|cong[ée]s|out of (?:the )?office|automatic reply|"
    r"auto(?:matic)?[- ]?(?:reply|response)|^auto:|vacation|abwesenheit|away from",
    re.IGNORECASE,
)
# Challenge-response systems (TMDA, BoxTrapper, Mailinblack, SpamArrest...): they ask the sender
# to prove it is a person; a newsletter never answers, and the address is not failing.
_CHALLENGE_SUBJECT = re.compile(
    r"verify#|please (?:confirm|verify)|confirm your (?:message|e-?mail)|"
    r"confirmation de (?:votre )?(?:message|mail|e-?mail)|v[ée]rification (?:de l'exp[ée]diteur|anti-?spam)|"
    r"requires verification|sender verification|spam ?arrest",
    re.IGNORECASE,
)
_CHALLENGE_HEADERS = ("x-delivery-agent", "x-boxtrapper", "x-mailinblack", "x-spamarrest")


@dataclass(frozen=True, slots=True)
class Failure:
    """One recipient the report is about."""

    recipient: str | None  # the address, as the report gives it; None when it names none
    kind: Kind  # hard, soft or complaint
    status: str | None = None  # the enhanced status code, `5.1.1`
    diagnostic: str | None = None  # what the remote server said, on one line


@dataclass(frozen=True, slots=True)
class Reading:
    """What one message is."""

    kind: Kind
    format: str  # how it was read: "RFC 3464 DSN", "ARF (RFC 5965)", "auto-reply", ...
    why: str  # in a few words, for the log and `status`
    failures: tuple[Failure, ...] = ()
    # Where a VERP address may be: the bounce's recipient headers, the returned message's
    # Return-Path, the report's sender fields.
    envelope: tuple[str, ...] = ()
    message_ids: tuple[str, ...] = field(default=())  # of the returned message


def _one_line(text: str | None, limit: int = 500) -> str | None:
    if text is None:
        return None
    flat = " ".join(str(text).split())
    return flat[:limit] or None


def _address(value: str | None) -> str | None:
    """The address of a DSN recipient field (`rfc822; bob@example.org`), None if of another type."""
    if not value:
        return None
    kind, _, address = str(value).partition(";")
    if not address:
        address, kind = kind, "rfc822"
    if kind.strip().lower() != "rfc822":
        return None
    address = address.strip().strip("<>").strip()
    return address if "@" in address and " " not in address else None


def _status(*texts: str | None) -> str | None:
    for text in texts:
        if text and (found := _STATUS.search(text)):
            return found.group(0)
    for text in texts:
        if text and (reply := _REPLY.search(text)):
            return f"{reply.group(1)}.0.0"
    return None


def _kind_of(status: str | None, *, failed: bool) -> Kind:
    if status is None:
        return "hard" if failed else "soft"
    if status.startswith("5.7."):
        return "soft"  # policy: the message or sender refused, not the address
    return "hard" if status.startswith("5") else "soft"


def _parts(message: Message) -> Iterator[Message]:
    yield from message.walk()


def _returned(message: Message) -> Message | None:
    """The returned message (or its headers) of a report, if it carries one."""
    for part in _parts(message):
        kind = part.get_content_type()
        if kind == "message/rfc822":
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        elif kind == "text/rfc822-headers":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                return HeaderParser().parsestr(data.decode("utf-8", "replace"))
    return None


def _header(message: Message | None, name: str) -> list[str]:
    if message is None:
        return []
    return [str(value) for value in (message.get_all(name) or [])]


def _envelope(message: Message, returned: Message | None, *fields: Message) -> tuple[str, ...]:
    found = [
        *(v for name in ("To", "Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To")
          for v in _header(message, name)),
        *_header(returned, "Return-Path"),
        *(v for block in fields for name in ("X-Postfix-Sender", "Original-Mail-From", "Original-Envelope-Id")
          for v in _header(block, name)),
    ]  # fmt: skip
    return tuple(found)


def _message_ids(message: Message, returned: Message | None) -> tuple[str, ...]:
    ids = _header(returned, "Message-ID")
    for name in ("In-Reply-To", "References"):
        for value in _header(message, name):
            ids += re.findall(r"<[^<>\s]+>", value)
    return tuple(dict.fromkeys(i.strip() for i in ids))


def _blocks(part: Message) -> list[Message]:
    """The field blocks of a `message/delivery-status` or `message/feedback-report` part."""
    payload = part.get_payload()
    if isinstance(payload, list):
        return [block for block in payload if isinstance(block, Message)]
    if isinstance(payload, str):  # parsed as text: read it as blocks of fields ourselves
        text = payload.replace("\r\n", "\n")
        return [HeaderParser().parsestr(chunk) for chunk in re.split(r"\n\s*\n", text) if chunk.strip()]
    return []


def _dsn(message: Message, part: Message) -> Reading | None:
    blocks = _blocks(part)
    returned = _returned(message)
    failures: list[Failure] = []
    for block in blocks[1:] if len(blocks) > 1 else blocks:
        action = str(block.get("Action", "")).strip().lower()
        recipient = _address(block.get("Original-Recipient")) or _address(block.get("Final-Recipient"))
        if not action and recipient is None:
            continue
        if action in ("delivered", "relayed", "expanded"):
            continue  # a success report, not a failure
        diagnostic = _one_line(block.get("Diagnostic-Code"))
        status = _status(str(block.get("Status", "")), diagnostic)
        if status is not None and status.startswith("2"):
            continue
        kind = "soft" if action == "delayed" else _kind_of(status, failed=action == "failed")
        failures.append(Failure(recipient, kind, status, diagnostic))
    if not failures:
        return None
    return Reading(
        kind=_worst(failures),
        format="RFC 3464 DSN",
        why=", ".join(f"{f.status or '?'} {f.recipient or '(no recipient)'}" for f in failures),
        failures=tuple(failures),
        envelope=_envelope(message, returned, *blocks[:1]),
        message_ids=_message_ids(message, returned),
    )


def _worst(failures: list[Failure]) -> Kind:
    kinds = {f.kind for f in failures}
    return "complaint" if "complaint" in kinds else "hard" if "hard" in kinds else "soft"


def _arf(message: Message, part: Message) -> Reading:
    blocks = _blocks(part)
    report = blocks[0] if blocks else Message()
    returned = _returned(message)
    feedback = str(report.get("Feedback-Type", "")).strip().lower()
    if feedback not in _COMPLAINTS:
        return Reading("ignored", "ARF (RFC 5965)", f"feedback report of type {feedback or 'none'}")
    recipients = [_address(v) for v in _header(report, "Original-Rcpt-To")]
    recipients += [a for _, a in getaddresses(_header(returned, "To")) if "@" in a]
    recipient = next((r for r in recipients if r), None)
    return Reading(
        kind="complaint",
        format="ARF (RFC 5965)",
        why=f"complaint ({feedback}) about {recipient or 'an unnamed recipient'}",
        failures=(Failure(recipient, "complaint", None, f"Feedback-Type: {feedback}"),),
        envelope=_envelope(message, returned, report),
        message_ids=_message_ids(message, returned),
    )


def _subject(message: Message) -> str:
    value = message.get("Subject", "")
    try:
        return str(email.header.make_header(email.header.decode_header(str(value))))
    except (ValueError, LookupError, email.errors.MessageError):  # a charset named wrong, say
        return str(value)


def _auto_reply(message: Message) -> str | None:
    """Why the message is a person's mailbox answering by itself, or None."""
    for name in _AUTOREPLY_HEADERS:
        if message.get(name) is not None:
            return f"auto-reply ({name} header)"
    if str(message.get("Precedence", "")).strip().lower() == "auto_reply":
        return "auto-reply (Precedence: auto_reply)"
    subject = _subject(message)
    for name in _CHALLENGE_HEADERS:
        if message.get(name) is not None:
            return f"challenge-response ({name} header)"
    if _CHALLENGE_SUBJECT.search(subject):
        return f"challenge-response (subject {subject[:80]!r})"
    if _AUTOREPLY_SUBJECT.search(subject):
        return f"auto-reply (subject {subject[:80]!r})"
    return None


def _text(message: Message) -> str:
    chunks: list[str] = []
    for part in _parts(message):
        if part.get_content_maintype() == "text":
            data = part.get_payload(decode=True)
            if isinstance(data, bytes):
                chunks.append(data.decode(part.get_content_charset() or "utf-8", "replace"))
    return "\n".join(chunks)


def _diagnostic_near(text: str, address: str) -> str | None:
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if address.lower() in line.lower():
            window = " ".join(lines[index : index + 4])
            if _STATUS.search(window) or _REPLY.search(window):
                return _one_line(window, 300)
    return None


def _plain_headers(message: Message) -> None:
    """Headers as `str`, which flufl.bounce's detectors expect: the stdlib gives a `Header` for
    one holding 8-bit bytes (`From: Système de messagerie <…>` unencoded), on which they raise,
    and then no later detector runs."""
    for part in message.walk():
        for name in {name.lower() for name in part}:
            values = part.get_all(name) or []
            if all(isinstance(value, str) for value in values):
                continue
            del part[name]
            for value in values:
                part[name] = (
                    str(value).encode("utf-8", "replace").decode("ascii", "replace").replace("\ufffd", "?")
                )


def _heuristic(message: Message) -> Reading | None:
    try:
        _plain_headers(message)
        temporary, permanent = all_failures(message)
    except Exception as error:  # the detectors raise on odd messages: not a bounce to us
        return Reading("unrecognised", "flufl.bounce", f"the bounce detectors failed on it ({error!r:.100})")
    if not temporary and not permanent:
        return None
    text = _text(message)
    failures: list[Failure] = []
    for found, permanent_one in [*((a, True) for a in permanent), *((a, False) for a in temporary)]:
        address = found.decode("utf-8", "replace") if isinstance(found, bytes) else str(found)
        address = address.strip().strip("<>")
        if "@" not in address:
            continue
        diagnostic = _diagnostic_near(text, address)
        status = _status(diagnostic) or ("5.0.0" if permanent_one else "4.0.0")
        kind: Kind = "hard" if permanent_one and not status.startswith("5.7.") else "soft"
        failures.append(Failure(address, kind, status, diagnostic))
    if not failures:
        return None
    returned = _returned(message)
    # These formats often quote the returned message as text, after a line saying so.
    quoted_ids = tuple(re.findall(r"^message-id:\s*(<[^<>\s]+>)", text, re.IGNORECASE | re.MULTILINE))
    quoted_paths = tuple(re.findall(r"^return-path:.*$", text, re.IGNORECASE | re.MULTILINE))
    return Reading(
        kind=_worst(failures),
        format="non-standard bounce (flufl.bounce)",
        why=", ".join(f"{f.status} {f.recipient}" for f in failures),
        failures=tuple(failures),
        envelope=_envelope(message, returned) + quoted_paths,
        message_ids=tuple(dict.fromkeys(_message_ids(message, returned) + quoted_ids)),
    )


def read_message(raw: bytes) -> Reading:
    """What this message of the bounce mailbox is; never raises on bad input: a message that
    trips the stdlib's email package somewhere is unrecognised, left for a person."""
    try:
        return _read(email.message_from_bytes(raw))
    except Exception as error:  # one odd message must not stop the reading of the others
        return Reading("unrecognised", "unreadable", f"cannot be read as an email ({error!r:.100})")


def _read(message: Message) -> Reading:
    if message.get_content_type() == "multipart/report":
        report_type = str(message.get_param("report-type", "") or "").lower()
        for part in _parts(message):
            if part.get_content_type() == "message/delivery-status" and report_type != "feedback-report":
                reading = _dsn(message, part)
                if reading is not None:
                    return reading
            if part.get_content_type() == "message/feedback-report":
                return _arf(message, part)
    why = _auto_reply(message)
    if why is not None:
        return Reading("ignored", "auto-reply", why)
    reading = _heuristic(message)
    if reading is not None:
        return reading
    auto = str(message.get("Auto-Submitted", "")).strip().lower()
    if auto and auto != "no":
        return Reading("ignored", "automatic message", f"Auto-Submitted: {auto}")
    if message.get_content_type() == "multipart/report":
        return Reading("unrecognised", "RFC 3464 DSN", "a delivery report naming no recipient that failed")
    return Reading("unrecognised", "unknown", "neither a bounce nor a complaint")

"""VERP envelope senders: `bounces+TOKEN@domain`, where TOKEN names one digest, sealed.

With `email.bounces.address: bounces@lettre.example.org`, each digest leaves with the envelope
sender (MAIL FROM, hence `Return-Path`) `bounces+d42-k5x3…@lettre.example.org`: `d42` is the
digest's number in the ledger (which says whose digest it is), the rest the first 80 bits of an
HMAC-SHA256 of that number and the subscriber's address, in lower-case base32. Only the secret's
holder can make a token that opens, so a forged bounce naming a digest does not count as ours.
Lower-case letters, digits and `-` only: safe in a local part whose case a relay may change,
and in a URL.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass

_TOKEN = re.compile(r"d([1-9][0-9]{0,17})-([a-z2-7]{16})")
_MAC_BYTES = 10  # 80 bits: 16 base32 characters, far beyond guessing by sending bounces


@dataclass(frozen=True, slots=True)
class Token:
    """A token as read from an address: the digest it names and its seal, not yet checked."""

    digest_id: int
    seal: str


def _seal(key: str, digest_id: int, subscriber: str) -> str:
    derived = hashlib.sha256(b"syndicator verp\0" + key.encode()).digest()
    mac = hmac.new(derived, f"{digest_id}\0{subscriber.lower()}".encode(), hashlib.sha256).digest()
    return base64.b32encode(mac[:_MAC_BYTES]).decode().lower()


def make_token(keys: Sequence[str], digest_id: int, subscriber: str) -> str:
    """The token of this digest of this subscriber, sealed with the current key (the last)."""
    return f"d{digest_id}-{_seal(keys[-1], digest_id, subscriber)}"


def verp_address(bounce_address: str, token: str) -> str:
    """`bounces@domain` with the token after a `+`: `bounces+TOKEN@domain`."""
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{token}@{domain}"


def find_token(text: str, bounce_address: str) -> Token | None:
    """The token in an address (or a header holding one) made from `bounce_address`, if any."""
    local, _, domain = bounce_address.lower().rpartition("@")
    pattern = re.escape(local) + r"\+([^@\s<>]+)@" + re.escape(domain)
    for found in re.finditer(pattern, text.lower()):
        match = _TOKEN.fullmatch(found.group(1))
        if match:
            return Token(int(match.group(1)), match.group(2))
    return None


def token_opens(keys: Sequence[str], token: Token, subscriber: str) -> bool:
    """Whether the token was sealed, with one of `keys`, for this digest of this subscriber."""
    return any(hmac.compare_digest(_seal(key, token.digest_id, subscriber), token.seal) for key in keys)

"""The tokens of the links in emails (unsubscribe, preferences, sign-up confirmation), sealed.

A token is the subscriber's address (for a confirmation, the request) as JSON, encrypted and
authenticated with AES-SIV (the `cryptography` package), with a key derived (HKDF-SHA256) from
the secret for each purpose: it cannot be forged, a preferences token does not unsubscribe,
and nobody who sees a link (in a forwarded email, or in the log of a mail scanner that follows
links) can read the address in it. AES-SIV is deterministic: the same address gives the same
token, so a digest's bytes do not change when it is built again. Tokens made by the first
releases (itsdangerous, signed but readable) are still accepted, so links in old emails keep
working.

The secret comes from `$SYNDICATOR_SECRET`; several secrets separated by spaces or commas may be
given, the newest last: tokens are sealed with the newest and read with any of them, so a key
rotation keeps old links working. Without the variable, a random secret is made once and kept in
the store, so the quick start needs none. Tokens do not expire: an unsubscribe link in a
years-old email must still work.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from itsdangerous import BadSignature, URLSafeSerializer

from .store import Store

SECRET_ENV = "SYNDICATOR_SECRET"
Purpose = Literal["unsubscribe", "preferences", "confirm"]
_TOKEN = re.compile(r"[A-Za-z0-9_-]{22,}")  # base64url, unpadded: at least the 16-byte tag


def secret_keys(store: Store) -> list[str]:
    """The signing secrets, oldest first: from the environment, else the store's own."""
    configured = [k for k in re.split(r"[\s,]+", os.environ.get(SECRET_ENV, "")) if k]
    if configured:
        return configured
    return [store.ensure_state("secret", lambda: secrets.token_urlsafe(32))]


def _key(secret: str, purpose: Purpose) -> bytes:
    """The AES-SIV key (two 256-bit keys) of a purpose under a secret."""
    derive = HKDF(algorithm=hashes.SHA256(), length=64, salt=None, info=f"syndicator.{purpose}".encode())
    return derive.derive(secret.encode())


class Sealer:
    """Seals small JSON values into URL-safe tokens for one purpose, and opens them: like
    itsdangerous's serializer (whose tokens of the first releases it still opens), but the value
    cannot be read from the token."""

    def __init__(self, keys: list[str], purpose: Purpose) -> None:
        self._purpose = [purpose.encode()]  # bound to the token as associated data too
        self._ciphers = [AESSIV(_key(key, purpose)) for key in reversed(keys)]  # newest first
        self._legacy = URLSafeSerializer(keys, salt=f"syndicator.{purpose}")

    def dumps(self, value: object) -> str:
        data = json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()
        sealed = self._ciphers[0].encrypt(data, self._purpose)
        return base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii")

    def loads(self, token: str) -> object | None:
        """The value sealed in the token, or None when it is not one of ours."""
        if "." in token:  # signed by the first releases, never sealed (no "." in base64url)
            try:
                legacy: object = self._legacy.loads(token)
            except BadSignature:
                return None
            return legacy
        if not _TOKEN.fullmatch(token):
            return None
        sealed = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        if base64.urlsafe_b64encode(sealed).rstrip(b"=").decode("ascii") != token:
            return None  # other spare bits in the last character: not the token we made
        for cipher in self._ciphers:
            try:
                value: object = json.loads(cipher.decrypt(sealed, self._purpose))
            except (InvalidTag, ValueError):  # another key's, or not a token at all
                continue
            return value
        return None


class Signer:
    """Makes and reads the tokens of one purpose that name an address."""

    def __init__(self, keys: list[str], purpose: Purpose) -> None:
        self._sealer = Sealer(keys, purpose)

    def sign(self, email: str) -> str:
        return self._sealer.dumps({"e": email.strip().lower()})

    def read(self, token: str) -> str | None:
        """The address a token was made for, or None when it is not one of ours."""
        data = self._sealer.loads(token)
        email = data.get("e") if isinstance(data, dict) else None
        return email if isinstance(email, str) else None

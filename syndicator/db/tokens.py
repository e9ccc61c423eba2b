"""The tokens of the links in emails (unsubscribe, preferences, sign-up confirmation), sealed.

A token is the subscriber's address (for a confirmation, the request) as JSON, encrypted and
authenticated with AES-SIV (the `cryptography` package), with a key derived (HKDF-SHA256) from
the secret for each purpose: it cannot be forged, a preferences token does not unsubscribe,
and nobody who sees a link (in a forwarded email, or in the log of a mail scanner that follows
links) can read the address in it. AES-SIV is deterministic: the same address gives the same
token, so a digest's bytes do not change when it is built again. Tokens made by the first
releases (itsdangerous, signed but readable) are still accepted, so links in old emails keep
working.

The secret comes from `$SYNDICATOR_SECRET`, whole: spaces and commas are part of it (only the
whitespace around it is dropped), and it must be at least 32 bytes long. A key rotation keeps old
links working through `$SYNDICATOR_OLD_SECRET` and `$SYNDICATOR_OLD_SECRET_<anything>`: one former
secret each, used only to open tokens, never to seal them. Without `$SYNDICATOR_SECRET`, a random
secret is made once and kept in the store, so the quick start needs none. Tokens do not expire:
an unsubscribe link in a years-old email must still work.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
from collections.abc import Mapping
from typing import Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from itsdangerous import BadSignature, URLSafeSerializer

from syndicator.db.store import Store
from syndicator.errors import SyndicatorError

SECRET_ENV = "SYNDICATOR_SECRET"
OLD_SECRET_ENV = "SYNDICATOR_OLD_SECRET"  # also SYNDICATOR_OLD_SECRET_<anything>, one secret each
MIN_SECRET_BYTES = 32  # a shorter one could be guessed offline from a single link
_OLD_NAME = re.compile(rf"{OLD_SECRET_ENV}(_\w+)?")
_MAKE_ONE = "python3 -c 'import secrets; print(secrets.token_urlsafe(32))'"
Purpose = Literal["unsubscribe", "preferences", "confirm", "export"]
_TOKEN = re.compile(r"[A-Za-z0-9_-]{22,}")  # base64url, unpadded: at least the 16-byte tag


class SecretError(SyndicatorError, ValueError):
    """A secret given in the environment that cannot be used (too short, or old ones without a
    current one)."""


def environment_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """The secrets the environment gives, oldest first and the current one last (empty when
    `$SYNDICATOR_SECRET` is unset); `SecretError` for one that is too short."""
    environ = os.environ if environ is None else environ
    current = environ.get(SECRET_ENV, "").strip()
    old_names = sorted(name for name in environ if _OLD_NAME.fullmatch(name))
    if not current:
        if old_names:
            raise SecretError(
                f"{old_names[0]} is set but {SECRET_ENV} is not: former secrets only open links, "
                "a current one must seal them",
                path=f"${old_names[0]}",
                hint=f"set {SECRET_ENV} to the current secret (make one with: {_MAKE_ONE})",
            )
        return []
    named = [(name, environ[name].strip()) for name in old_names if environ[name].strip()]
    for name, secret in [*named, (SECRET_ENV, current)]:
        if not _is_text(secret):  # os.environ keeps bytes that are not UTF-8 as lone surrogates
            raise SecretError(
                "the secret holds bytes that are not UTF-8 text (raw random bytes?): "
                "links cannot be sealed with it",
                path=f"${name}",
                hint=f"make a secret of text with: {_MAKE_ONE}",
            )
        if len(secret.encode()) < MIN_SECRET_BYTES:
            raise SecretError(
                f"the secret is {len(secret.encode())} bytes long, shorter than the "
                f"{MIN_SECRET_BYTES} needed: one link sealed with it is enough to guess it",
                path=f"${name}",
                hint=f"make one with: {_MAKE_ONE}; it is one secret, spaces and commas included "
                f"(keep a former one in {OLD_SECRET_ENV}_<name> to keep its links working)",
            )
    return [secret for _, secret in named if secret != current] + [current]


def _is_text(secret: str) -> bool:
    try:
        secret.encode()
    except UnicodeEncodeError:
        return False
    return True


def secret_keys(store: Store) -> list[str]:
    """The signing secrets, oldest first, the one that seals last: from the environment, else the
    store's own."""
    return environment_secrets() or [store.ensure_state("secret", lambda: secrets.token_urlsafe(32))]


def misnamed_secrets(environ: Mapping[str, str] | None = None) -> list[str]:
    """Variables named like a secret of ours that syndicator does not read (a typo such as
    `SYNDICATOR_OLD_SECRETS`), which would leave their links unopened without a word."""
    names = (os.environ if environ is None else environ).keys()
    return sorted(
        n
        for n in names
        if n.startswith("SYNDICATOR_") and "SECRET" in n and n != SECRET_ENV and not _OLD_NAME.fullmatch(n)
    )


def list_like_secret(environ: Mapping[str, str] | None = None) -> bool:
    """Whether `$SYNDICATOR_SECRET` looks like the list of secrets of the first releases (spaces
    or commas between parts each long enough to be a secret): now it is one secret, whole."""
    value = (os.environ if environ is None else environ).get(SECRET_ENV, "").strip()
    parts = [p for p in re.split(r"[\s,]+", value) if p]
    return len(parts) > 1 and all(len(p.encode(errors="surrogateescape")) >= MIN_SECRET_BYTES for p in parts)


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


class AddressTokens:
    """Seals an address into a token of one purpose (encrypted and authenticated, `Sealer`),
    and opens such tokens."""

    def __init__(self, keys: list[str], purpose: Purpose) -> None:
        self._sealer = Sealer(keys, purpose)

    def seal(self, email: str) -> str:
        """A token that names the address (encrypted: nobody can read it from the token)."""
        return self._sealer.dumps({"e": email.strip().lower()})

    def open(self, token: str) -> str | None:
        """The address a token was made for, or None when it is not one of ours."""
        data = self._sealer.loads(token)
        email = data.get("e") if isinstance(data, dict) else None
        return email if isinstance(email, str) else None

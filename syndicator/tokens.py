"""Signed tokens for the links in emails (unsubscribe, preferences), with itsdangerous.

The secret comes from `$SYNDICATOR_SECRET`; several secrets separated by spaces or commas may be
given, the newest last: tokens are signed with the newest and accepted with any of them, so a
key rotation keeps old links working. Without the variable, a random secret is made once and
kept in the store, so the quick start needs none. Tokens do not expire: an unsubscribe link in
a years-old email must still work.
"""

from __future__ import annotations

import os
import re
import secrets
from typing import Literal

from itsdangerous import BadSignature, URLSafeSerializer

from .store import Store

SECRET_ENV = "SYNDICATOR_SECRET"
Purpose = Literal["unsubscribe", "preferences", "confirm"]


def secret_keys(store: Store) -> list[str]:
    """The signing secrets, oldest first: from the environment, else the store's own."""
    configured = [k for k in re.split(r"[\s,]+", os.environ.get(SECRET_ENV, "")) if k]
    if configured:
        return configured
    return [store.ensure_state("secret", lambda: secrets.token_urlsafe(32))]


class Signer:
    """Makes and reads the tokens of one purpose."""

    def __init__(self, keys: list[str], purpose: Purpose) -> None:
        self._serializer = URLSafeSerializer(keys, salt=f"syndicator.{purpose}")

    def sign(self, email: str) -> str:
        return str(self._serializer.dumps({"e": email.strip().lower()}))

    def read(self, token: str) -> str | None:
        """The address a token was made for, or None when it is not one of ours."""
        try:
            data = self._serializer.loads(token)
        except BadSignature:
            return None
        email = data.get("e") if isinstance(data, dict) else None
        return email if isinstance(email, str) else None

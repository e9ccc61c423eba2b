"""Keyed hashes of addresses: what the store keeps of an address it must no longer hold readable.

`subscribers forget` (syndicator/privacy/erasure.py) and the retention of suppressions
(syndicator/privacy/retention.py) replace an address by `hmac:<hex>`, an HMAC-SHA256 of its mailbox
(syndicator/addresses.py) under a key derived (HKDF, its own purpose) from the app's secret.
Nobody can read the address back, nor test a guess without the secret; but the address, given
again, is recognised: a suppressed address that was erased is still never mailed.

Every secret the app knows is tried (the current one, former ones kept in
`$SYNDICATOR_OLD_SECRET_*`, and the store's own), so that rotating the secret does not let an
erased, suppressed address be mailed again; the current one makes new hashes.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from syndicator.addresses import mailbox
from syndicator.db.store import Store
from syndicator.db.tokens import secret_keys

PREFIX = "hmac:"


def is_pseudonym(value: str) -> bool:
    return value.startswith(PREFIX)


def _key(secret: str) -> bytes:
    derive = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"syndicator.privacy.erasure")
    return derive.derive(secret.encode())


class Pseudonyms:
    """The keyed hashes of addresses, under every secret known (the current one first)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        unique = list(dict.fromkeys(reversed(list(secrets))))  # newest first, each once
        self._keys = [_key(secret) for secret in unique]

    @classmethod
    def of_store(cls, store: Store) -> Pseudonyms:
        known = secret_keys(store)
        own = store.get_state("secret")  # the store's own, from before a secret was set
        return cls(([own] if own else []) + known)

    def current(self, address: str) -> str:
        """The hash a new erasure writes."""
        return self._hash(self._keys[0], address)

    def every(self, address: str) -> set[str]:
        """The hashes the address may be stored under."""
        return {self._hash(key, address) for key in self._keys}

    @staticmethod
    def _hash(key: bytes, address: str) -> str:
        hashed = hmac.new(key, mailbox(address.strip()).encode(), hashlib.sha256).hexdigest()
        return PREFIX + hashed

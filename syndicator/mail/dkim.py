"""DKIM signatures of outgoing digests (RFC 6376), with dkimpy: rsa-sha256, relaxed/relaxed.

`load_key` reads and checks the private key once (an RSA key of 2048 bits or more, PEM,
unencrypted); `sign` puts a `DKIM-Signature` header on top of the bytes `emails.to_bytes` made
and returns exactly what goes on the wire. Only headers present in the message are signed, so
that a header added later (a `Received:` line...) never breaks the signature, and the body is
left byte for byte as it was: CRLF line ends, no line over 998 characters.

The public key to publish, as a TXT record at `<selector>._domainkey.<domain>`, comes from:
`openssl rsa -in KEY -pubout -outform DER | base64 -w0` → `v=DKIM1; k=rsa; p=<that>`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from syndicator.errors import ConfigError, Problem
from syndicator.mail.messages import address

if TYPE_CHECKING:
    from syndicator.config.model import Config

MIN_BITS = 2048

# The headers a reader sees and a forger would change, in the order they are signed.
SIGNED_HEADERS = (
    "From",
    "To",
    "Subject",
    "Date",
    "Message-ID",
    "List-Id",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
)

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9])?"
_DNS_NAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_PEM = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\s*\n(.*?)\n-----END \1-----", re.DOTALL)
_HEADER_NAME = re.compile(rb"^([\x21-\x39\x3b-\x7e]+)[ \t]*:", re.MULTILINE)

_HINT = "make one with: openssl genrsa -out dkim.pem 2048"


@dataclass(frozen=True)
class DkimKey:
    """A checked signing key: whose DNS record (`<selector>._domainkey.<domain>`) holds its half."""

    selector: str
    domain: str
    private_key: bytes = field(repr=False)  # PEM, PKCS#1 or PKCS#8, unencrypted


def _key_error(path: Path, message: str) -> ConfigError:
    return ConfigError([Problem(str(path), None, message)], hint=_HINT)


def _dns_name(value: str, what: str) -> str:
    """`value` as an ASCII DNS name (IDNA for an accented domain), or a ConfigError."""
    text = value.strip().rstrip(".")
    try:
        ascii_name = text.encode("idna").decode("ascii")
    except UnicodeError:
        ascii_name = ""
    if not _DNS_NAME.fullmatch(ascii_name):
        raise ConfigError([Problem("email.dkim", None, f"the DKIM {what} {value!r} is not a DNS name")])
    return ascii_name.lower()


def load_key(path: Path, selector: str, domain: str) -> DkimKey:
    """Read and check the PEM private key at `path`; ConfigError naming the file when unusable."""
    # dkimpy is imported where it signs: with its DNS resolver it costs 30 ms that a send
    # without a key need not pay (bench/rss2email.py, at 0 ms).
    import dkim  # noqa: PLC0415
    from dkim.crypto import UnparsableKeyError, parse_pem_private_key  # noqa: PLC0415

    selector, domain = _dns_name(selector, "selector"), _dns_name(domain, "domain")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise _key_error(path, f"cannot read the DKIM key: {exc.strerror or exc}") from None
    pem = data.replace(b"\r\n", b"\n").strip() + b"\n"
    block = _PEM.search(pem)
    if block is None:
        raise _key_error(path, "not a PEM private key (no '-----BEGIN ... PRIVATE KEY-----' block)")
    label = block.group(1).decode("ascii")
    if "ENCRYPTED" in label:
        raise _key_error(
            path, "the DKIM key is encrypted; store it unencrypted (openssl rsa -in KEY -out PLAIN)"
        )
    if label not in ("RSA PRIVATE KEY", "PRIVATE KEY"):
        raise _key_error(path, f"not an RSA private key ('{label}')")
    try:
        parsed = parse_pem_private_key(block.group(0))
    except (UnparsableKeyError, ValueError, IndexError, TypeError):
        raise _key_error(path, "not an RSA private key (DKIM signs with rsa-sha256)") from None
    bits = int(parsed["modulus"]).bit_length()
    if bits < MIN_BITS:
        raise _key_error(path, f"the DKIM key has {bits} bits; at least {MIN_BITS} are needed")
    key = DkimKey(selector=selector, domain=domain, private_key=block.group(0))
    try:  # catches what parsing lets through (inconsistent numbers...) now, not at the first send
        _signature(b"From: a@" + domain.encode() + b"\r\n\r\nx\r\n", key)
    except dkim.DKIMException as exc:
        raise _key_error(path, f"the DKIM key cannot sign: {exc}") from None
    return key


def _present(data: bytes) -> set[str]:
    """The lowercased names of the header fields of `data`."""
    head = re.split(rb"\r?\n\r?\n", data, maxsplit=1)[0]
    return {m.group(1).decode("ascii").lower() for m in _HEADER_NAME.finditer(head)}


def _signature(data: bytes, key: DkimKey) -> bytes:
    import dkim  # noqa: PLC0415 -- loaded already by load_key, which made the key

    present = _present(data)
    include = [name.lower().encode("ascii") for name in SIGNED_HEADERS if name.lower() in present]
    signature: bytes = dkim.sign(
        data,
        key.selector.encode("ascii"),
        key.domain.encode("ascii"),
        key.private_key,
        canonicalize=(b"relaxed", b"relaxed"),
        signature_algorithm=b"rsa-sha256",
        include_headers=include,
        linesep=b"\r\n",
    )
    return signature


def sign(data: bytes, key: DkimKey) -> bytes:
    """`data` (a message as `emails.to_bytes` gives it) with its DKIM-Signature header on top.

    The signature's `t=` is the time of signing, so two calls give different bytes: sign once,
    store the result, and send that. A message without a From header cannot be signed
    (dkim.ParameterError: a bug, never a user's doing)."""
    if "from" not in _present(data):
        import dkim  # noqa: PLC0415 -- loaded already by load_key, which made the key

        raise dkim.ParameterError("a DKIM signature needs a From header")
    return _signature(data, key) + data


def dkim_key(config: Config) -> DkimKey | None:
    """The DKIM key `email.dkim` names, loaded and checked; None when signing is off."""
    settings = config.email.dkim
    if settings is None:
        return None
    domain = settings.domain or address(config.email.from_).domain
    return load_key(config.resolve(settings.key), settings.selector, domain)

"""DKIM signing of digest emails: real keys, real digest bytes, verified as a receiver would."""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import SMTP
from pathlib import Path

import dkim
import pytest

from syndicator.errors import ConfigError
from syndicator.mail.dkim import SIGNED_HEADERS, DkimKey, load_key, sign
from syndicator.mail.messages import Envelope, RenderedEmail, build_message, to_bytes

SELECTOR, DOMAIN = "lettre2024", "example.org"


@dataclass(frozen=True)
class KeyPair:
    """A private key file and the public half as the DNS record carries it (base64 DER)."""

    path: Path
    public: str


def _openssl() -> str:
    found = shutil.which("openssl")
    if found is None:
        pytest.skip("neither the cryptography package nor the openssl command is available")
    return found


def make_rsa_key(path: Path, bits: int) -> KeyPair:
    """An RSA key of `bits` written to `path` (PEM), by `cryptography` if installed, else openssl."""
    try:
        from cryptography.hazmat.primitives import serialization  # type: ignore[import-not-found, unused-ignore]
        from cryptography.hazmat.primitives.asymmetric import rsa  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        openssl = _openssl()
        subprocess.run([openssl, "genrsa", "-out", str(path), str(bits)], check=True, capture_output=True)
        der = subprocess.run(
            [openssl, "rsa", "-in", str(path), "-pubout", "-outform", "DER"], check=True, capture_output=True
        ).stdout
    else:
        private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        path.write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        der = private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return KeyPair(path, base64.b64encode(der).decode("ascii"))


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """One 2048-bit key for the module: generating it is the slow part."""
    return make_rsa_key(tmp_path_factory.mktemp("dkim") / "dkim.pem", 2048)


@pytest.fixture(scope="module")
def key(pair: KeyPair) -> DkimKey:
    return load_key(pair.path, SELECTOR, DOMAIN)


DnsFunc = Callable[..., bytes | None]


def dns_for(pair: KeyPair, asked: list[bytes] | None = None) -> DnsFunc:
    """A resolver holding only the TXT record of `pair` at `<selector>._domainkey.<domain>.`."""
    record = f"v=DKIM1; k=rsa; p={pair.public}".encode("ascii")

    def lookup(name: bytes, timeout: int = 5) -> bytes | None:
        if asked is not None:
            asked.append(name)
        return record if name == f"{SELECTOR}._domainkey.{DOMAIN}.".encode("ascii") else None

    return lookup


def digest_bytes(**changes: str) -> bytes:
    """A digest email as syndicator builds it, French text and long lines included."""
    long_line = "Les acteurs de la politique de la ville se réunissent à Roubaix. " * 30
    rendered = RenderedEmail(
        subject=changes.get("subject", "IREV — vos actualités du lundi 3 juin 2024"),
        text=f"Bonjour Marie,\n\n{long_line}\n\nÉducation\n- L'assemblée générale adopte le programme\n",
        html=f"<!doctype html><html lang=fr><body><h1>Éducation</h1><p>{long_line}</p></body></html>",
    )
    envelope = Envelope(
        sender="IREV <lettre@example.org>",
        recipient="marie.dupont@example.org",
        recipient_name="Marie Dupont",
        message_id="<digest.7.0123456789ab@example.org>",
        date=datetime(2024, 6, 3, 5, 30, tzinfo=UTC),
        list_name="IREV",
        unsubscribe_url="https://lettre.example.org/unsubscribe/abc.def",
    )
    return to_bytes(build_message(rendered, envelope))


def signature_tags(signed: bytes) -> dict[str, str]:
    """The tags of the DKIM-Signature header on top of `signed`, whitespace removed."""
    header = message_from_bytes(signed, policy=SMTP)["DKIM-Signature"]
    assert header is not None
    tags = (part.partition("=") for part in re.sub(r"\s+", "", str(header)).split(";") if part)
    return {name: value for name, _, value in tags}


def test_signed_digest_verifies(pair: KeyPair, key: DkimKey) -> None:
    """A signed digest verifies against the TXT record at <selector>._domainkey.<domain>."""
    asked: list[bytes] = []
    signed = sign(digest_bytes(), key)
    assert signed.startswith(b"DKIM-Signature: ")
    assert dkim.verify(signed, dnsfunc=dns_for(pair, asked)) is True
    assert asked == [b"lettre2024._domainkey.example.org."]


def test_signature_tags(key: DkimKey) -> None:
    """rsa-sha256, relaxed/relaxed, the key's domain and selector, and every required header."""
    tags = signature_tags(sign(digest_bytes(), key))
    assert tags["v"] == "1"
    assert tags["a"] == "rsa-sha256"
    assert tags["c"] == "relaxed/relaxed"
    assert (tags["d"], tags["s"]) == (DOMAIN, SELECTOR)
    assert "l" not in tags  # the whole body is signed: nothing can be appended
    signed_headers = tags["h"].lower().split(":")
    assert signed_headers == [name.lower() for name in SIGNED_HEADERS]
    assert {"from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe",
            "list-unsubscribe-post"} <= set(signed_headers)  # fmt: skip


def test_only_present_headers_signed(pair: KeyPair, key: DkimKey) -> None:
    """A header the message lacks is left out of h=, so the message still verifies."""
    message = message_from_bytes(digest_bytes(), policy=SMTP)
    del message["List-Unsubscribe-Post"]
    del message["List-Id"]
    signed = sign(message.as_bytes(policy=SMTP), key)
    signed_headers = signature_tags(signed)["h"].lower().split(":")
    assert "list-id" not in signed_headers
    assert "list-unsubscribe-post" not in signed_headers
    assert "list-unsubscribe" in signed_headers
    assert dkim.verify(signed, dnsfunc=dns_for(pair)) is True


def test_body_byte_changed_fails(pair: KeyPair, key: DkimKey) -> None:
    """One letter of the body changed after signing: the signature no longer verifies."""
    signed = sign(digest_bytes(), key)
    head, body = signed.split(b"\r\n\r\n", 1)
    at = body.index(b"Bonjour")
    tampered = head + b"\r\n\r\n" + body[:at] + b"b" + body[at + 1 :]
    assert len(tampered) == len(signed)
    assert dkim.verify(tampered, dnsfunc=dns_for(pair)) is False


@pytest.mark.parametrize(
    ("header", "old", "new"),
    [
        ("From", b"lettre@example.org", b"lettre@example.com"),
        ("To", b"marie.dupont@", b"marie.dupond@"),
        ("Date", b"03 Jun 2024", b"04 Jun 2024"),
        ("Message-ID", b"<digest.7.", b"<digest.8."),
        ("List-Unsubscribe", b"/unsubscribe/abc.def", b"/unsubscribe/abc.xyz"),
    ],
)
def test_signed_header_changed_fails(
    pair: KeyPair, key: DkimKey, header: str, old: bytes, new: bytes
) -> None:
    """One signed header changed after signing: the signature no longer verifies."""
    signed = sign(digest_bytes(), key)
    head, body = signed.split(b"\r\n\r\n", 1)
    lines = head.split(b"\r\n")
    index = next(i for i, line in enumerate(lines) if line.lower().startswith(header.lower().encode() + b":"))
    assert old in lines[index]
    lines[index] = lines[index].replace(old, new)
    assert dkim.verify(b"\r\n".join(lines) + b"\r\n\r\n" + body, dnsfunc=dns_for(pair)) is False


def test_changed_subject_fails(pair: KeyPair, key: DkimKey) -> None:
    """A message signed with one subject and sent with another (encoded words too) fails."""
    signed = sign(digest_bytes(), key)
    other = digest_bytes(subject="IREV — vos actualités du mardi 4 juin 2024")
    other_head = other.split(b"\r\n\r\n", 1)[0]
    signature = signed[: len(signed) - len(digest_bytes())]
    forged = signature + other_head + b"\r\n\r\n" + digest_bytes().split(b"\r\n\r\n", 1)[1]
    assert dkim.verify(forged, dnsfunc=dns_for(pair)) is False


def test_unsigned_header_added_still_verifies(pair: KeyPair, key: DkimKey) -> None:
    """Headers relays add (Received, Return-Path) leave the signature valid."""
    signed = sign(digest_bytes(), key)
    relayed = b"Received: from mx.example.org by mx.example.net; Mon, 3 Jun 2024 07:30:00 +0200\r\n" + signed
    assert dkim.verify(b"Return-Path: <lettre@example.org>\r\n" + relayed, dnsfunc=dns_for(pair)) is True


def test_wrong_public_key_fails(tmp_path: Path, key: DkimKey) -> None:
    """A DNS record holding another key's public half does not verify the signature."""
    other = make_rsa_key(tmp_path / "other.pem", 2048)
    assert dkim.verify(sign(digest_bytes(), key), dnsfunc=dns_for(other)) is False


def test_signed_bytes_are_wire_ready(key: DkimKey) -> None:
    """The result is the signature then the message unchanged: CRLF only, no line over 998."""
    data = digest_bytes()
    signed = sign(data, key)
    assert signed.endswith(data)
    assert b"\r\n" in data and re.search(rb"(?<!\r)\n|\r(?!\n)", signed) is None
    lines = signed.split(b"\r\n")
    assert max(len(line) for line in lines) <= 998
    signature = signed[: len(signed) - len(data)]
    assert signature.endswith(b"\r\n")
    assert all(len(line) <= 78 for line in signature.split(b"\r\n"))  # folded as RFC 5322 asks
    assert signature.isascii()


def test_pkcs1_key_accepted(tmp_path: Path, pair: KeyPair) -> None:
    """A traditional `BEGIN RSA PRIVATE KEY` file (PKCS#1, CRLF line ends) also signs."""
    openssl = _openssl()
    pkcs1 = tmp_path / "pkcs1.pem"
    subprocess.run(
        [openssl, "rsa", "-in", str(pair.path), "-out", str(pkcs1), "-traditional"],
        check=True, capture_output=True,
    )  # fmt: skip
    assert pkcs1.read_bytes().startswith(b"-----BEGIN RSA PRIVATE KEY-----")
    pkcs1.write_bytes(pkcs1.read_bytes().replace(b"\n", b"\r\n"))
    signed = sign(digest_bytes(), load_key(pkcs1, SELECTOR, DOMAIN))
    assert dkim.verify(signed, dnsfunc=dns_for(pair)) is True


def test_small_key_refused(tmp_path: Path) -> None:
    """A 1024-bit key is refused, and the message names the file and the size needed."""
    small = make_rsa_key(tmp_path / "small.pem", 1024)
    with pytest.raises(ConfigError) as caught:
        load_key(small.path, SELECTOR, DOMAIN)
    assert str(small.path) in str(caught.value)
    assert "1024 bits" in str(caught.value) and "2048" in str(caught.value)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read"),
        (b"", "not a PEM private key"),
        (b"selector: lettre2024\n", "not a PEM private key"),
        (b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n", "not an RSA private key"),
        (b"-----BEGIN EC PRIVATE KEY-----\nbm90IGEga2V5\n-----END EC PRIVATE KEY-----\n", "not an RSA"),
        (b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n", "encrypted"),
        (b"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "not an RSA private key"),
    ],
)
def test_unusable_key_file_refused(tmp_path: Path, content: bytes | None, expected: str) -> None:
    """A missing, empty, non-PEM, non-RSA, encrypted or public key file: an error naming it."""
    path = tmp_path / "keys" / "dkim.pem"
    if content is not None:
        path.parent.mkdir()
        path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        load_key(path, SELECTOR, DOMAIN)
    assert str(caught.value).startswith(f"{path}: ")
    assert expected in str(caught.value)


def test_ec_key_refused(tmp_path: Path) -> None:
    """A real elliptic-curve key (PKCS#8, as openssl makes it) is refused: DKIM here is RSA."""
    openssl = _openssl()
    path = tmp_path / "ec.pem"
    subprocess.run(
        [openssl, "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path)],
        check=True, capture_output=True,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="not an RSA private key") as caught:
        load_key(path, SELECTOR, DOMAIN)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize(("selector", "domain"), [("lettre 2024", DOMAIN), (SELECTOR, "example.org; x=1"),
                                                  ("", DOMAIN), (SELECTOR, "")])  # fmt: skip
def test_bad_selector_or_domain_refused(pair: KeyPair, selector: str, domain: str) -> None:
    """A selector or domain that is not a DNS name could inject tags into the signature: refused."""
    with pytest.raises(ConfigError, match="is not a DNS name"):
        load_key(pair.path, selector, domain)


def test_accented_domain_signs_as_idna(pair: KeyPair) -> None:
    """An internationalised domain is signed under its ASCII (IDNA) form, as DNS holds it."""
    key = load_key(pair.path, "Lettre2024", "Région-exemple.fr.")
    assert (key.selector, key.domain) == ("lettre2024", "xn--rgion-exemple-bhb.fr")
    assert signature_tags(sign(digest_bytes(), key))["d"] == "xn--rgion-exemple-bhb.fr"


def test_key_repr_hides_private_key(key: DkimKey) -> None:
    """The private key never shows in a repr (logs, tracebacks)."""
    assert "PRIVATE" not in repr(key) and SELECTOR in repr(key)

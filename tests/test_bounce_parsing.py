"""Reading the bounce mailbox's messages: real Postfix DSNs, other MTAs' formats written from
their published descriptions, complaints (ARF), auto-replies, and bad input."""

from __future__ import annotations

from pathlib import Path

import pytest

from syndicator.bounces.parse import read_message
from syndicator.mail.verp import Token, find_token, make_token, token_opens, verp_address

FIXTURES = Path(__file__).parent / "fixtures" / "bounces"

# fixture: (kind, how it is read, recipient, status)
EXPECTED = {
    "postfix-local-unknown-user.eml": ("hard", "RFC 3464 DSN", "personne@localhost", "5.1.1"),
    "postfix-remote-550.eml": ("hard", "RFC 3464 DSN", "parti@remote.test", "5.1.1"),
    "postfix-remote-mailbox-full.eml": ("soft", "RFC 3464 DSN", "plein@remote.test", "4.2.2"),
    "exchange-dsn-5.1.10.eml": ("hard", "RFC 3464 DSN", "quitte@exchange.test", "5.1.10"),
    "delayed-4.4.1.eml": ("soft", "RFC 3464 DSN", "lent@slow.test", "4.4.1"),
    "exim-permanent.eml": ("hard", "flufl.bounce", "absent@exim.test", "5.1.1"),
    "qmail-permanent.eml": ("hard", "flufl.bounce", "disparu@qmail.test", "5.1.1"),
    "arf-abuse.eml": ("complaint", "ARF (RFC 5965)", "plaignant@fai.example", None),
    "arf-not-spam.eml": ("ignored", "ARF (RFC 5965)", None, None),
    "autoreply-reponse-automatique.eml": ("ignored", "auto-reply", None, None),
    "autoreply-sieve-vacation.eml": ("ignored", "auto-reply", None, None),
    "autoreply-x-autoreply.eml": ("ignored", "auto-reply", None, None),
    "autoreply-precedence.eml": ("ignored", "auto-reply", None, None),
    "challenge-response.eml": ("ignored", "auto-reply", None, None),
    "malformed-dsn.eml": ("unrecognised", "RFC 3464 DSN", None, None),
    "not-a-bounce.eml": ("unrecognised", "unknown", None, None),
}


def test_every_fixture_has_an_expected_reading() -> None:
    """No fixture sits in the folder untested."""
    assert sorted(p.name for p in FIXTURES.glob("*.eml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_format_is_read_as_what_it_is(name: str) -> None:
    """Each fixture gives its kind, the recipient it is about, and the DSN's status."""
    kind, how, recipient, status = EXPECTED[name]
    reading = read_message((FIXTURES / name).read_bytes())
    assert reading.kind == kind, reading.why
    assert how in reading.format
    if recipient is not None:
        assert [f.recipient for f in reading.failures] == [recipient]
        assert reading.failures[0].status == status


@pytest.mark.parametrize("name", [n for n, e in EXPECTED.items() if e[0] in ("hard", "soft", "complaint")])
def test_bounces_carry_the_verp_address_and_the_returned_message_id(name: str) -> None:
    """Every bounce and complaint fixture yields the VERP address it came back to and the
    returned digest's Message-ID: the two ways to tie it to a subscriber beside the recipient."""
    reading = read_message((FIXTURES / name).read_bytes())
    assert any(find_token(text, "bounces@lettre.example.org") for text in reading.envelope)
    assert any(mid.startswith("<digest.1.") for mid in reading.message_ids)


def test_a_dsn_is_a_bounce_though_it_says_auto_replied() -> None:
    """Postfix marks its DSNs `Auto-Submitted: auto-replied` (RFC 3834): still a hard bounce."""
    raw = (FIXTURES / "postfix-remote-550.eml").read_bytes()
    assert b"Auto-Submitted: auto-replied" in raw
    assert read_message(raw).kind == "hard"


def test_a_policy_refusal_is_counted_soft_not_hard() -> None:
    """5.7.1 (a spam filter, DMARC) is about the message or the sender, not the address: soft."""
    raw = (FIXTURES / "postfix-remote-550.eml").read_bytes().replace(b"5.1.1", b"5.7.1")
    reading = read_message(raw)
    assert (reading.kind, reading.failures[0].status) == ("soft", "5.7.1")


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe garbage",
        b"Content-Type: multipart/report\n\n--",
        b"Subject: =?utf-8?q?=ZZ?=\n\nx",
        b"Subject: =?utf\xff8?q?x?=\n\nx",  # a charset name the email package refuses
    ],
)
def test_garbage_is_unrecognised_never_an_exception(raw: bytes) -> None:
    """Bytes that are no mail at all are unrecognised, with a reason, and raise nothing."""
    reading = read_message(raw)
    assert reading.kind in ("unrecognised", "ignored") and reading.why


def test_a_verp_token_opens_only_for_its_digest_and_subscriber() -> None:
    """The token is sealed: another digest number, another address or another key does not open it."""
    keys = ["k" * 40]
    token = make_token(keys, 42, "marie.dupont@example.org")
    address = verp_address("bounces@lettre.example.org", token)
    assert address.startswith("bounces+d42-") and address.endswith("@lettre.example.org")
    assert len(address.partition("@")[0]) <= 64  # a local part's limit (RFC 5321)
    found = find_token(address.upper(), "bounces@lettre.example.org")  # a relay may change the case
    assert found == Token(42, token.split("-")[1])
    assert token_opens(keys, found, "Marie.Dupont@example.org")
    assert not token_opens(keys, found, "karim.benali@example.org")
    assert not token_opens(["x" * 40], found, "marie.dupont@example.org")
    assert not token_opens(keys, Token(43, found.seal), "marie.dupont@example.org")
    assert find_token("bounces+d42-short@lettre.example.org", "bounces@lettre.example.org") is None
    assert find_token(address, "bounces@other.example.org") is None


def test_a_bounce_with_an_unencoded_accented_sender_is_still_read() -> None:
    """`From: Système de messagerie <…>` in raw UTF-8 makes flufl.bounce's detectors raise (they
    call str methods on the stdlib's `Header`) before qmail's is tried: read all the same."""
    raw = (FIXTURES / "qmail-permanent.eml").read_bytes()
    raw = raw.replace(b"From: MAILER-DAEMON@", "From: Système de messagerie <MAILER-DAEMON@".encode())
    raw = raw.replace(b"@mx.qmail.test\n", b"@mx.qmail.test>\n", 1)
    reading = read_message(raw)
    assert (reading.kind, [f.recipient for f in reading.failures]) == ("hard", ["disparu@qmail.test"])

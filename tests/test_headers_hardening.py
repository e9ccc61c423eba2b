"""Names and links that would forge email headers: RFC 2047 encoded words (CVE-2024-6923, which
the Python of our machines still has), line breaks, a header block ended early; the check of
every finished header block; and the one-click unsubscription header only for https links.

Real parts throughout: the web app serving the sign-up form, the CLI sending digests to its
outbox, the DKIM signature verified as a receiver would, emails parsed back with the stdlib.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path

import dkim
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from syndicator.config.model import load_config
from syndicator.db import signups as signup_requests
from syndicator.db.schema import signup_requests as requests_table
from syndicator.db.store import Store
from syndicator.digests.run import DigestRun
from syndicator.digests.send import send_digests
from syndicator.ingest.reading import ingest
from syndicator.mail import messages as emails
from syndicator.mail.messages import (
    ONE_CLICK,
    Envelope,
    RenderedEmail,
    UnsafeHeaders,
    build_message,
    check_headers,
    digest_bytes,
    header_text,
    to_bytes,
)
from syndicator.typography import french_text
from syndicator.web import signup_email

from .conftest import Run
from .test_dkim import DOMAIN, SELECTOR, KeyPair, dns_for, make_rsa_key
from .web_support import SECRET, WebSite, built_project, served

# The attack of the report: a header of its own once Python 3.11.7 folds it.
REPLY_TO = "=?utf-8?q?=0D=0AReply-To:_support@evil.test?="
# The same, ending the header block: what follows would be the start of the body.
BODY = "=?utf-8?q?=0D=0A=0D=0AVotre_compte_est_suspendu?="
NEUTRALISED = "= ?utf-8?q?=0D=0AReply-To:_support@evil.test?="


def _headers(data: bytes) -> list[str]:
    """The names of a message's headers, as a mail program reads them."""
    return [name.lower() for name in message_from_bytes(data, policy=policy.SMTP)]


# --- the cleaner ---------------------------------------------------------------------------------


def test_header_text_leaves_no_encoded_word_and_no_line_break() -> None:
    """`=?` (the start of an encoded word) becomes `= ?`; CR, LF, C1 controls and Unicode line
    separators become spaces; an ordinary name is left as it is."""
    assert header_text(REPLY_TO) == NEUTRALISED
    assert header_text("Evil\r\nBcc: x\x85y\u2028z") == "Evil Bcc: x y z"
    assert header_text("==??") == "== ??"
    assert header_text("Hélène Lefèvre-d'Arc") == "Hélène Lefèvre-d'Arc"


# --- sign-up confirmations, on the real web app -----------------------------------------------------


class _Site(WebSite):
    def sign_up(self, name: str) -> int:
        hidden = self.hidden("/subscribe")
        data = {
            **hidden, "email": "anne.martin@exemple.fr", "name": name, "frequency": "daily",
            "thematiques": ["Éducation"], "consent": "yes", "action": "subscribe",
        }  # fmt: skip
        return int(self.client.post("/subscribe", data=data).status_code)

    def sent(self) -> list[bytes]:
        return [path.read_bytes() for path in sorted((self.root / "outbox").glob("*-signup-*.eml"))]


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    """One 2048-bit DKIM key for the module."""
    return make_rsa_key(tmp_path_factory.mktemp("dkim") / "dkim.pem", 2048)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_project(tmp_path_factory.mktemp("headers"))


@pytest.fixture
def signed_site(
    built: Path, tmp_path: Path, pair: KeyPair, monkeypatch: pytest.MonkeyPatch
) -> Iterator[_Site]:
    """The shipped project served by the web app, its emails DKIM-signed."""
    monkeypatch.setenv("SYNDICATOR_SECRET", SECRET)

    def sign(text: str) -> str:
        dkim_keys = f"  dkim: {{key: {pair.path}, selector: {SELECTOR}, domain: {DOMAIN}}}\n"
        return text.replace("  transport: outbox", dkim_keys + "  transport: outbox", 1)

    yield from served(_Site, built, tmp_path / "site", sign)


@pytest.mark.parametrize("name", [REPLY_TO, BODY], ids=["reply-to", "end-of-headers"])
def test_an_encoded_word_name_signing_up_forges_no_header_of_a_signed_confirmation(
    signed_site: _Site, pair: KeyPair, name: str
) -> None:
    """POST /subscribe with a name made of an encoded word holding CRLF: the confirmation keeps
    its own headers and no other, the name shows as typed (neutralised) in To, the body starts
    with the greeting, and the DKIM signature verifies."""
    assert signed_site.sign_up(name) == 200
    [data] = signed_site.sent()
    assert dkim.verify(data, dnsfunc=dns_for(pair)) is True
    assert _headers(data) == [
        "dkim-signature", "from", "to", "subject", "date", "message-id", "auto-submitted", "mime-version",
        "content-type",
    ]  # fmt: skip
    assert not re.search(rb"^(Reply-To|Votre)", data, re.MULTILINE | re.IGNORECASE)
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    [to] = message["To"].addresses
    assert (to.display_name, to.addr_spec) == (header_text(name), "anne.martin@exemple.fr")
    text = message.get_body(("plain",))
    assert text is not None
    # The name keeps no `=?`; its spaces before `?` become the narrow no-break space of French.
    assert text.get_content().splitlines()[0] == f"Bonjour {french_text(header_text(name))},"


def test_a_confirmation_failing_the_header_check_is_never_sent(
    signed_site: _Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the cleaners to let an encoded word through (CR and LF only removed, as before),
    the check stops the confirmation: the visitor gets the "could not send" page (503), the
    outbox stays empty and the request is not kept."""

    def weak(value: str) -> str:
        return " ".join(re.sub(r"[\r\n]", " ", value).split())

    for module in (emails, signup_email, signup_requests):
        monkeypatch.setattr(module, "header_text", weak)
    assert signed_site.sign_up(REPLY_TO) == 503
    assert signed_site.sent() == []
    with signed_site.store.engine.connect() as connection:
        assert connection.execute(requests_table.select()).all() == []
    assert signed_site.sign_up("Anne Martin") == 200  # the same form, a plain name: sent


# --- digests, through the CLI ---------------------------------------------------------------------


def test_names_in_config_never_forge_a_digest_header_nor_break_the_greeting(run: Run, project: Path) -> None:
    """A name holding an encoded word and one holding CRLF, in config.yaml: their digests have
    exactly the usual headers, the names on one line in To and in the greeting; `check` warns
    of both names at their lines."""
    path = project / "config.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("name: Centre social de l'Alma", f"name: '{REPLY_TO}'")
    text = text.replace("name: Claire Martin", 'name: "Evil\\r\\nBcc: intrus@evil.test"')
    path.write_text(text, encoding="utf-8")
    checked = run("check")
    lines = text.splitlines()  # a name's line follows its address's
    for who, shown in (("centre.social", NEUTRALISED), ("claire.martin", "Evil Bcc: intrus@evil.test")):
        line = next(
            n for n, t in enumerate(lines, 1) if t.lstrip().startswith("name:") and who in lines[n - 2]
        )
        assert f"config.yaml:{line}: warning: {who}@example.org: the name" in checked.err
        assert f"emails show it as {shown!r}" in checked.err
    run("ingest")
    sent = run("digest", "send", "--frequency", "monthly")
    assert sent.out.strip() == "sent 2, empty 0, failed 0, suppressed 0", sent.err
    found = {}
    for eml in (project / "outbox").glob("*.eml"):
        data = eml.read_bytes()
        assert "reply-to" not in _headers(data) and "bcc" not in _headers(data)
        message = message_from_bytes(data, policy=policy.default)
        assert isinstance(message, EmailMessage)
        [to] = message["To"].addresses
        body = message.get_body(("plain",))
        assert body is not None
        found[to.addr_spec] = (to.display_name, body.get_content().splitlines()[0])
    assert found == {
        "centre.social@example.org": (NEUTRALISED, f"Bonjour {french_text(NEUTRALISED)},"),
        "claire.martin@example.org": ("Evil Bcc: intrus@evil.test", "Bonjour Evil Bcc: intrus@evil.test,"),
    }


@pytest.mark.parametrize("name", ["Evil\r\nBcc: x@evil.test", REPLY_TO, "Evil\u2028Bcc"])
def test_subscribers_add_refuses_a_name_emails_cannot_show(run: Run, project: Path, name: str) -> None:
    """`subscribers add --name` with a line break or an encoded word is a usage error saying
    what to do; config.yaml is left as it was."""
    before = (project / "config.yaml").read_bytes()
    result = run("subscribers", "add", "anne@example.org", "--name", name)
    assert result.code == 2
    assert "argument --name:" in result.err and "give the name on one line" in result.err
    assert (project / "config.yaml").read_bytes() == before
    assert run("subscribers", "add", "anne@example.org", "--name", "Anne\u00a0Martin-Lefèvre").code == 0


def test_a_digest_failing_the_header_check_is_its_subscribers_failure_alone(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Were the cleaner to let an encoded word through (as the one before this check did, which
    only removed CR and LF), the check of the finished header block stops that digest: it is
    that subscriber's failure, nothing of it is sent (it is recorded as unbuilt, with the
    reason), and the others are sent."""
    path = project / "config.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace("name: Centre social de l'Alma", f"name: '{REPLY_TO}'"),
        encoding="utf-8",
    )
    monkeypatch.setattr(emails, "header_text", lambda value: " ".join(re.sub(r"[\r\n]", " ", value).split()))
    config = load_config(path)
    with Store.open(config.database_url) as store:
        ingest(store, [config.items_path])
        report = send_digests(DigestRun(store, config, now=datetime.now(UTC)), frequency="monthly")
    assert (report.sent, report.failed) == (1, 1)
    [error] = report.errors
    assert error.startswith(
        "centre.social@example.org: digest not built: UnsafeHeaders: the headers read back"
    )
    [eml] = (project / "outbox").glob("*.eml")
    assert b"claire.martin@example.org" in eml.read_bytes()


# --- the check of the finished header block -----------------------------------------------------


def test_the_stdlib_folding_an_encoded_word_into_a_header_is_caught() -> None:
    """A message built with a name that skipped the cleaner (what Python 3.11.7 folds into a
    line break) is refused by `to_bytes`: no bytes to sign or send."""
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = "IREV <lettre@example.org>"
    message["To"] = Address(display_name=REPLY_TO, addr_spec="anne@example.org")
    message["Subject"] = "Bonjour"
    message.set_content("Bonjour")
    with pytest.raises(UnsafeHeaders):
        to_bytes(message)


@pytest.mark.parametrize(
    "head",
    [
        b"From: a@example.org\r\nTo: b@example.org\r\nReply-To: c@evil.test\r\n\r\n",  # one too many
        b"From: a@example.org\r\n\r\nTo: b@example.org\r\n\r\n",  # ended early
        b"From: a@example.org\r\nTo: b@example.org\nBcc: c@evil.test\r\n\r\n",  # a bare LF
        b"From: a@example.org\r\n To: b@example.org\r\n\r\n",  # To folded into From
        b" From: a@example.org\r\nTo: b@example.org\r\n\r\n",  # a continuation first
        b"From: a@example.org\r\nTo: =?utf-8?q?x=0D=0AReply-To:_c@evil.test?= <b@example.org>\r\n\r\n",
        b"From: a@example.org\r\nTo: b@example.org",  # no end of headers
    ],
)
def test_a_header_block_not_the_one_built_is_refused(head: bytes) -> None:
    """Extra or missing headers, a bare LF, misplaced folding, an encoded word that decodes to
    another value, no end of headers: each raises `UnsafeHeaders`."""
    with pytest.raises(UnsafeHeaders):
        check_headers(head, [("From", "a@example.org"), ("To", "b@example.org")])


_ENVELOPE = Envelope(
    sender="IREV <lettre@example.org>",
    recipient="marie.dupont@example.org",
    recipient_name="Marie Dupont",
    message_id="<digest.1.abc@example.org>",
    date=datetime(2026, 11, 26, 7, 30, tzinfo=UTC),
    list_name="IREV",
    unsubscribe_url="https://lettre.example.org/unsubscribe/abc",
)
_RENDERED = RenderedEmail(subject="IREV — 1 actualité", text="Bonjour,\n", html="<p>Bonjour,</p>\n")


@settings(max_examples=200, deadline=None)
@given(name=st.text(max_size=120), recipient=st.emails())
@example(name=REPLY_TO, recipient="marie.dupont@example.org")
@example(name=BODY, recipient="marie.dupont@example.org")
def test_any_name_reaches_the_to_header_on_one_line_and_passes_the_check(name: str, recipient: str) -> None:
    """Whatever the name (any characters), the digest is made, holds its usual headers and no
    other, and its To header reads back as the cleaned name, on one line: the check refuses no
    real digest."""
    envelope = dataclasses.replace(_ENVELOPE, recipient_name=name, recipient=recipient)
    data = digest_bytes(_RENDERED, envelope)
    message = message_from_bytes(data, policy=policy.default)
    assert isinstance(message, EmailMessage)
    assert [k.lower() for k in message] == [
        "from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe", "list-unsubscribe-post",
        "auto-submitted", "precedence", "mime-version", "content-type",
    ]  # fmt: skip
    [to] = message["To"].addresses
    # Spaces aside: the stdlib may read a space between two of its own encoded words.
    assert "".join(to.display_name.split()) == "".join(header_text(name).split())
    assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", to.display_name)


# --- one-click unsubscription ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "one_click"),
    [
        ("https://lettre.example.org/unsubscribe/abc", True),
        ("HTTPS://lettre.example.org/unsubscribe/abc", True),
        ("http://127.0.0.1:8080/unsubscribe/abc", False),
        ("http://lettre.example.org/unsubscribe/abc", False),
    ],
)
def test_one_click_unsubscription_is_offered_only_for_an_https_link(url: str, one_click: bool) -> None:
    """RFC 8058 3.1: `List-Unsubscribe-Post` only when the List-Unsubscribe URL is https; the
    quick writer and the stdlib agree either way."""
    envelope = dataclasses.replace(_ENVELOPE, unsubscribe_url=url)
    data = digest_bytes(_RENDERED, envelope)
    assert data == to_bytes(build_message(_RENDERED, envelope))
    message = message_from_bytes(data, policy=policy.default)
    assert (message["List-Unsubscribe-Post"] == ONE_CLICK) is one_click
    assert ("list-unsubscribe-post" in _headers(data)) is one_click
    assert f"<{url}>" in str(message["List-Unsubscribe"])


# --- check: web.base_url with the smtp transport -----------------------------------------------------


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        (None, "error"),  # the default, http://127.0.0.1:8080
        ("http://localhost:8080", "error"),
        ("https://[::1]/lettre", "error"),
        ("http://lettre.example.org", "warning"),
        ("https://lettre.example.org", None),
    ],
)
def test_check_reports_links_no_reader_can_follow_when_mailing_by_smtp(
    run: Run, project: Path, monkeypatch: pytest.MonkeyPatch, base_url: str | None, expected: str | None
) -> None:
    """With `transport: smtp`, a loopback `web.base_url` is an error (exit 1) and a plain http
    one a warning, each naming the line and what to set; https on a public name is fine. With
    the outbox transport (trying out), the default says nothing."""
    monkeypatch.setenv("SYNDICATOR_SMTP_USER", "lettre")
    monkeypatch.setenv("SYNDICATOR_SMTP_PASSWORD", "mot-de-passe")
    path = project / "config.yaml"
    text = path.read_text(encoding="utf-8")
    assert "web.base_url" not in run("check").err  # outbox: the quick start stays clean
    text = text.replace("transport: outbox ", "transport: smtp   ", 1)
    web_line = "  base_url: http://127.0.0.1:8080             # links in emails start with this\n"
    text = text.replace(web_line, f"  base_url: {base_url}\n" if base_url else "")
    path.write_text(text, encoding="utf-8")
    result = run("check")
    problems = [line for line in result.err.splitlines() if "web.base_url" in line]
    if expected is None:
        assert problems == []
        return
    [problem] = problems
    lines = text.splitlines()
    web = lines.index("web:") + 1
    line = web + 1 if lines[web].startswith("  base_url:") else web
    assert problem.startswith(f"config.yaml:{line}: " + ("warning: " if expected == "warning" else ""))
    assert "https://" in problem
    if expected == "error":
        assert result.code == 1 and "loopback" in problem

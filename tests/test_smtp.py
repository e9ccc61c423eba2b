"""The smtp transport against real aiosmtpd servers that misbehave on purpose."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import ssl
import time
from collections.abc import Sequence
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY

import pytest
from aiosmtpd.smtp import SMTP as ServerSMTP
from aiosmtpd.smtp import Envelope, Session

from syndicator.config.model import Config
from syndicator.mail import smtp
from syndicator.mail.smtp import Secret, SmtpTransport, TokenBucket, classify
from syndicator.mail.transports import Outgoing, Result, RunStopped

from .smtp_server import Handler, self_signed, smtp_server

# The SMTP server runs in aiosmtpd's own thread and event loop: when a test ends, a socket or TLS
# transport it had may still be closing there, and Python reports that late close as an
# "unraisable" ResourceWarning (seen about once in ten full runs under load). It is the test
# server's, not syndicator's, so it does not fail these tests.
pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


SENDER = "IREV <lettre@example.org>"


def outgoing(number: int, recipient: str | None = None) -> Outgoing:
    """A digest-like message: QP UTF-8 text, a line that starts with a dot, its own Message-ID."""
    recipient = recipient or f"abonne{number}@example.org"
    message = EmailMessage(policy=SMTP_POLICY)
    message["From"] = SENDER
    message["To"] = recipient
    message["Subject"] = f"Lettre n° {number}"
    message["Message-ID"] = f"<digest.{number}@example.org>"
    message.set_content(
        f"Bonjour,\n.une ligne qui commence par un point\nnuméro {number}\n",
        charset="utf-8",
        cte="quoted-printable",
    )
    data = message.as_bytes()
    return Outgoing(data, SENDER, recipient, f"<digest.{number}@example.org>", f"{number:08d}")


class Ledger:
    """The callbacks a transport is given, recording what it claimed and reported."""

    def __init__(self, *, refuse: Sequence[str] = ()) -> None:
        self.refuse = set(refuse)
        self.claims: list[str] = []
        self.results: dict[str, list[Result]] = {}

    async def claim(self, message: Outgoing) -> bool:
        self.claims.append(message.name)
        return message.name not in self.refuse

    async def done(self, message: Outgoing, result: Result) -> None:
        self.results.setdefault(message.name, []).append(result)

    def run(self, transport: SmtpTransport, messages: Sequence[Outgoing]) -> None:
        asyncio.run(transport.send(messages, claim=self.claim, done=self.done))

    def outcome(self, message: Outgoing) -> str:
        [result] = self.results[message.name]  # exactly one report per claimed message
        return result.outcome


def transport(port: int, **options: object) -> SmtpTransport:
    """A transport to the test server: plain text unless told, fast retries, no DNS lookups."""
    settings: dict[str, object] = {
        "starttls": False,
        "backoff": 0.01,
        "timeout": 5.0,
        "rate_per_second": 1000.0,
        "local_hostname": "client.example.org",
    }
    settings.update(options)
    return SmtpTransport("127.0.0.1", port, **settings)  # type: ignore[arg-type]  # kwargs from a dict


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """A server context with a self-signed certificate, made once for the module."""
    return self_signed(tmp_path_factory.mktemp("tls"))


def test_every_message_arrives_byte_for_byte_over_several_connections() -> None:
    """30 messages over 4 connections: each arrives once, as the very bytes that were sent."""
    handler, ledger = Handler(), Ledger()
    messages = [outgoing(n) for n in range(30)]
    with smtp_server(handler) as port:
        ledger.run(transport(port, max_connections=4), messages)
    assert {r.data for r in handler.accepted} == {m.data for m in messages}
    assert len(handler.accepted) == 30
    assert all(r.sender == "lettre@example.org" and len(r.recipients) == 1 for r in handler.accepted)
    assert sorted(ledger.claims) == [m.name for m in messages]
    assert all(ledger.outcome(m) == "sent" for m in messages)
    assert 2 <= len(handler.peers) <= 4


@pytest.mark.parametrize("reply", ["421 4.3.2 Service shutting down", "450 4.2.1 Mailbox busy",
                                   "451 4.3.0 Try again later"])  # fmt: skip
def test_a_temporary_refusal_is_retried_and_the_message_delivered_once(reply: str) -> None:
    """A 4xx answer to DATA, then 250: the message is claimed once, sent twice, delivered once."""
    handler, ledger = Handler(data_replies=[reply]), Ledger()
    message = outgoing(1)
    with smtp_server(handler) as port:
        ledger.run(transport(port), [message])
    assert len(handler.received) == 2 and len(handler.accepted) == 1
    assert ledger.claims == [message.name] and ledger.outcome(message) == "sent"


def test_temporary_refusals_past_the_last_try_leave_the_message_temporary() -> None:
    """Three 451 in a row with three tries: reported `temporary` once, with the server's words."""
    handler, ledger = Handler(data_replies=["451 4.3.0 Try again later"] * 3), Ledger()
    message = outgoing(1)
    with smtp_server(handler) as port:
        ledger.run(transport(port, tries=3), [message])
    assert len(handler.received) == 3 and handler.accepted == []
    assert ledger.claims == [message.name]
    assert ledger.results[message.name] == [Result("temporary", "451 4.3.0 Try again later")]


def test_an_unknown_mailbox_is_a_bad_mailbox_and_the_others_are_sent() -> None:
    """`550 5.1.1` for one recipient: bad_mailbox for it; a 552 is `failed`; the rest are sent."""
    rcpt = {
        "inconnu@example.org": "550 5.1.1 <inconnu@example.org>: Recipient address rejected",
        "plein@example.org": "552 5.2.2 Mailbox full",
    }
    handler, ledger = Handler(rcpt_replies=rcpt), Ledger()
    messages = [outgoing(1), outgoing(2, "inconnu@example.org"), outgoing(3, "plein@example.org"),
                outgoing(4)]  # fmt: skip
    with smtp_server(handler) as port:
        ledger.run(transport(port, max_connections=2), messages)
    assert [ledger.outcome(m) for m in messages] == ["sent", "bad_mailbox", "failed", "sent"]
    assert ledger.results[messages[1].name][0].detail.startswith("550 5.1.1 <inconnu@example.org>")
    assert {r.recipients[0] for r in handler.accepted} == {"abonne1@example.org", "abonne4@example.org"}


def test_a_policy_refusal_stops_the_run_and_suppresses_nobody() -> None:
    """`550 5.7.1`: RunStopped; the refused message is left temporary, later ones never claimed."""
    rcpt = {"bloque@example.org": "550 5.7.1 Relaying denied"}
    handler, ledger = Handler(rcpt_replies=rcpt), Ledger()
    messages = [outgoing(1), outgoing(2, "bloque@example.org"), outgoing(3), outgoing(4)]
    with smtp_server(handler) as port, pytest.raises(RunStopped, match=r"550 5\.7\.1 Relaying denied"):
        ledger.run(transport(port, max_connections=1), messages)
    assert ledger.claims == [messages[0].name, messages[1].name]
    assert ledger.outcome(messages[0]) == "sent" and ledger.outcome(messages[1]) == "temporary"
    assert not any(r.outcome == "bad_mailbox" for rs in ledger.results.values() for r in rs)


def test_a_policy_refusal_on_every_connection_claims_no_more_than_is_on_the_wire() -> None:
    """5.7.1 to everyone over 4 connections: at most one claim per connection, each reported once."""
    messages = [outgoing(n) for n in range(20)]
    rcpt = {m.recipient: "554 5.7.1 Sender address rejected by policy" for m in messages}
    handler, ledger = Handler(rcpt_replies=rcpt), Ledger()
    with smtp_server(handler) as port, pytest.raises(RunStopped, match=r"5\.7\.1"):
        ledger.run(transport(port, max_connections=4), messages)
    assert 1 <= len(ledger.claims) <= 4
    assert sorted(ledger.results) == sorted(ledger.claims)
    assert all(ledger.outcome(m) == "temporary" for m in messages if m.name in ledger.claims)


def test_an_address_with_accents_goes_with_smtputf8() -> None:
    """A non-ASCII recipient is sent with the SMTPUTF8 option, which the server offers."""
    handler, ledger = Handler(), Ledger()
    message = outgoing(1, "élodie@mairie-roubaix.fr")
    with smtp_server(handler) as port:
        ledger.run(transport(port), [message])
    assert [r.recipients for r in handler.accepted] == [("élodie@mairie-roubaix.fr",)]
    assert ledger.outcome(message) == "sent"


def test_a_connection_dropped_after_data_is_retried_with_the_same_bytes() -> None:
    """The server hangs up instead of answering DATA: the same bytes (same Message-ID) go again."""
    handler, ledger = Handler(drops=1), Ledger()
    message = outgoing(7)
    with smtp_server(handler) as port:
        ledger.run(transport(port), [message])
    assert [r.data for r in handler.received] == [message.data, message.data]
    assert b"Message-ID: <digest.7@example.org>" in handler.received[0].data
    assert len(handler.accepted) == 1 and len(handler.peers) == 2
    assert ledger.claims == [message.name] and ledger.outcome(message) == "sent"


def test_a_server_silent_past_the_timeout_is_left_and_the_message_sent_anew() -> None:
    """No answer to DATA within the timeout: the connection is dropped, the message sent again."""
    handler, ledger = Handler(stalls=1), Ledger()
    message = outgoing(1)
    with smtp_server(handler) as port:
        started = time.monotonic()
        ledger.run(transport(port, timeout=0.3), [message])
        elapsed = time.monotonic() - started
    assert len(handler.received) == 2 and len(handler.accepted) == 1 and len(handler.peers) == 2
    assert ledger.outcome(message) == "sent" and 0.3 <= elapsed < 3


def test_starttls_asked_but_not_offered_stops_before_any_claim() -> None:
    """No STARTTLS in the server's EHLO: RunStopped, nothing sent in plain text, nothing claimed."""
    handler, ledger = Handler(), Ledger()
    with smtp_server(handler) as port, pytest.raises(RunStopped, match="does not offer STARTTLS"):
        ledger.run(transport(port, starttls=True), [outgoing(1), outgoing(2)])
    assert handler.received == [] and ledger.claims == [] and ledger.results == {}


def test_starttls_with_a_self_signed_certificate_delivers_when_verify_is_off(
    tls_context: ssl.SSLContext,
) -> None:
    """STARTTLS to a self-signed server with `verify: false`: delivered."""
    handler, ledger = Handler(), Ledger()
    message = outgoing(1)
    with smtp_server(handler, starttls=tls_context) as port:
        ledger.run(transport(port, starttls=True, verify=False), [message])
    assert [r.data for r in handler.accepted] == [message.data]
    assert ledger.outcome(message) == "sent"


def test_a_certificate_that_fails_verification_stops_the_run(tls_context: ssl.SSLContext) -> None:
    """STARTTLS to a self-signed server with verification on: RunStopped, nothing claimed."""
    handler, ledger = Handler(), Ledger()
    with (
        smtp_server(handler, starttls=tls_context) as port,
        pytest.raises(RunStopped, match=r"TLS with 127\.0\.0\.1:\d+ failed.*CERTIFICATE_VERIFY_FAILED"),
    ):
        ledger.run(transport(port, starttls=True, verify=True), [outgoing(1)])
    assert handler.received == [] and ledger.claims == []


def test_implicit_tls_delivers(tls_context: ssl.SSLContext) -> None:
    """`tls: true` (port 465 style) to a self-signed server with verify off: delivered."""
    handler, ledger = Handler(), Ledger()
    message = outgoing(1)
    with smtp_server(handler, implicit_tls=tls_context) as port:
        ledger.run(transport(port, tls=True, verify=False), [message])
    assert [r.data for r in handler.accepted] == [message.data]


def test_login_comes_from_the_environment_and_never_shows(
    tls_context: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """AUTH with the user and password the config's variables name; repr and logs hide it."""
    password = "s3cret-Mot-de-passe"
    handler, ledger = Handler(logins={"lettre": password}), Ledger()
    monkeypatch.setenv("TEST_SMTP_USER", "lettre")
    monkeypatch.setenv("TEST_SMTP_PASSWORD", password)
    caplog.set_level(logging.DEBUG, logger="syndicator")
    with smtp_server(handler, starttls=tls_context, auth=True) as port:
        smtp = {"host": "127.0.0.1", "port": port, "starttls": True, "verify": False,
                "username_env": "TEST_SMTP_USER", "password_env": "TEST_SMTP_PASSWORD"}  # fmt: skip
        config = Config.model_validate({"email": {"transport": "smtp", "smtp": smtp}})
        sender = SmtpTransport.from_config(config)
        sender.local_hostname = "client.example.org"
        ledger.run(sender, [outgoing(1)])
    assert handler.credentials == [("lettre", password)]
    assert len(handler.accepted) == 1
    assert password not in repr(sender) and password not in str(sender.password)
    assert "Secret('**********')" in repr(sender)
    assert password not in caplog.text


def test_a_wrong_password_stops_the_run(tls_context: ssl.SSLContext) -> None:
    """A 535 to AUTH: RunStopped naming the user, nothing claimed."""
    handler, ledger = Handler(logins={"lettre": "right"}), Ledger()
    with smtp_server(handler, starttls=tls_context, auth=True) as port:
        sender = transport(port, starttls=True, verify=False, username="lettre", password=Secret("wrong"))
        with pytest.raises(RunStopped, match=r"refused the login of 'lettre': 535 5\.7\.8"):
            ledger.run(sender, [outgoing(1)])
    assert ledger.claims == []


def test_a_missing_password_variable_is_reported_before_sending(monkeypatch: pytest.MonkeyPatch) -> None:
    """`password_env` names an unset variable: RunStopped saying which, before any connection."""
    monkeypatch.delenv("TEST_SMTP_ABSENT", raising=False)
    smtp = {"username_env": "HOME", "password_env": "TEST_SMTP_ABSENT"}
    config = Config.model_validate({"email": {"transport": "smtp", "smtp": smtp}})
    with pytest.raises(RunStopped, match=r"\$TEST_SMTP_ABSENT, which is not set"):
        SmtpTransport.from_config(config)


def test_the_rate_limit_spaces_messages_across_connections() -> None:
    """20 messages at 40 per second over 4 connections take at least 19/40 s."""
    handler, ledger = Handler(), Ledger()
    with smtp_server(handler) as port:
        sender = transport(port, max_connections=4, rate_per_second=40.0)
        started = time.monotonic()
        ledger.run(sender, [outgoing(n) for n in range(20)])
        elapsed = time.monotonic() - started
    assert len(handler.accepted) == 20
    assert elapsed >= 0.45


def test_connections_are_reused_then_renewed() -> None:
    """50 messages with two connections open two; with 3 messages per connection, one renews."""
    handler, ledger = Handler(), Ledger()
    with smtp_server(handler) as port:
        ledger.run(transport(port, max_connections=2), [outgoing(n) for n in range(50)])
    assert len(handler.accepted) == 50 and len(handler.peers) <= 2

    handler, ledger = Handler(), Ledger()
    with smtp_server(handler) as port:
        ledger.run(transport(port, max_connections=1, messages_per_connection=3),
                   [outgoing(n) for n in range(10)])  # fmt: skip
    assert len(handler.accepted) == 10 and len(handler.peers) == 4


class Timed(Handler):
    """Notes when each MAIL and each end of DATA reached the server, by recipient."""

    def __init__(self) -> None:
        super().__init__()
        self.mail_at: list[float] = []
        self.data_at: dict[str, float] = {}

    async def handle_MAIL(
        self, server: ServerSMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.mail_at.append(time.monotonic())
        envelope.mail_from, envelope.mail_options = address, list(options)
        return "250 OK"

    async def handle_DATA(self, server: ServerSMTP, session: Session, envelope: Envelope) -> str:
        self.data_at[envelope.rcpt_tos[0]] = time.monotonic()
        return await super().handle_DATA(server, session, envelope)


def test_the_next_envelope_goes_while_the_last_outcome_is_written_but_not_its_data() -> None:
    """One connection, outcomes that take 0.5 s to record: the next MAIL goes meanwhile, its DATA
    only once the outcome is on record (at most one message per connection unrecorded)."""
    handler, recorded_at = Timed(), {}
    messages = [outgoing(n) for n in range(3)]

    async def claim(message: Outgoing) -> bool:
        return True

    async def done(message: Outgoing, result: Result) -> None:
        await asyncio.sleep(0.5)
        recorded_at[message.recipient] = time.monotonic()

    with smtp_server(handler) as port:
        asyncio.run(transport(port, max_connections=1).send(messages, claim=claim, done=done))
    assert len(handler.accepted) == 3
    for previous, following in itertools.pairwise(messages):
        assert handler.data_at[following.recipient] > recorded_at[previous.recipient]
    assert handler.mail_at[1] < recorded_at[messages[0].recipient]  # not waiting for the record


def test_kept_connections_serve_the_next_send_and_are_closed_after() -> None:
    """Within `connections()`, two sends share one connection, closed when the block ends; a
    connection idle for longer than IDLE is not used again."""
    handler, ledger = Handler(), Ledger()

    async def twice(sender: SmtpTransport, pause: float) -> None:
        async with sender.connections():
            await sender.send([outgoing(1)], claim=ledger.claim, done=ledger.done)
            await asyncio.sleep(pause)
            await sender.send([outgoing(2)], claim=ledger.claim, done=ledger.done)
        assert sender._idle == []  # nothing is left open

    with smtp_server(handler) as port:
        asyncio.run(twice(transport(port, max_connections=1), 0))
    assert len(handler.accepted) == 2 and len(handler.peers) == 1

    handler = Handler()
    with smtp_server(handler) as port, pytest.MonkeyPatch.context() as patch:
        patch.setattr(smtp, "IDLE", 0.05)
        asyncio.run(twice(transport(port, max_connections=1), 0.1))
    assert len(handler.accepted) == 2 and len(handler.peers) == 2


def test_a_message_the_ledger_will_not_claim_is_not_sent() -> None:
    """`claim` answers False: that message is neither sent nor reported."""
    handler, ledger = Handler(), Ledger(refuse=[outgoing(2).name])
    messages = [outgoing(1), outgoing(2), outgoing(3)]
    with smtp_server(handler) as port:
        ledger.run(transport(port, max_connections=1), messages)
    assert {r.recipients[0] for r in handler.accepted} == {"abonne1@example.org", "abonne3@example.org"}
    assert messages[1].name not in ledger.results


def test_an_unreachable_server_stops_the_run_with_nothing_claimed() -> None:
    """Nothing listens on the port: a few tries, then RunStopped; every message is left pending."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed at once: nothing listens there
    ledger = Ledger()
    with pytest.raises(RunStopped, match=r"cannot reach the SMTP server 127\.0\.0\.1:\d+"):
        ledger.run(transport(port, tries=2), [outgoing(1), outgoing(2)])
    assert ledger.claims == []


def test_plain_text_credentials_to_a_remote_host_are_refused() -> None:
    """A login without TLS or STARTTLS, to a host other than this one: refused at once."""
    with pytest.raises(RunStopped, match="over plain text"):
        SmtpTransport("smtp.example.org", 25, starttls=False, username="u", password=Secret("p"))


@pytest.mark.parametrize(
    ("code", "text", "stage", "verdict"),
    [
        (451, "4.7.1 Greylisted", "rcpt", "temporary"),
        (550, "5.1.1 <x@example.org>: unknown", "rcpt", "bad_mailbox"),
        (553, "5.1.3 Bad address syntax", "rcpt", "bad_mailbox"),
        (550, "5.1.1 unknown user", "data", "bad_mailbox"),
        (553, "5.1.8 Sender domain does not exist", "rcpt", "stop"),
        (550, "5.1.0 Sender rejected", "mail", "stop"),
        (550, "5.7.1 Message rejected as spam", "data", "stop"),
        (535, "Authentication failed", "connect", "stop"),
        (554, "Transaction failed", "data", "failed"),
        (552, "5.3.4 Message too big", "data", "failed"),
        (550, "Mailbox unavailable", "rcpt", "failed"),
    ],
)
def test_replies_are_classified_by_their_enhanced_status(code: int, text: str, stage: str,
                                                         verdict: str) -> None:  # fmt: skip
    """5.1.x about a recipient is a bad mailbox, about the sender or 5.7.x a stop, 4xx temporary."""
    assert classify(code, text, stage=stage) == verdict  # type: ignore[arg-type]  # parametrized str


def test_the_token_bucket_wakes_its_waiters_when_interrupted() -> None:
    """A bucket at one token a minute gives the first at once, and lets go when the run stops."""

    async def scenario() -> tuple[bool, bool, float]:
        bucket, stop = TokenBucket(1 / 60), asyncio.Event()
        first = await bucket.take(stop)
        asyncio.get_running_loop().call_later(0.05, stop.set)
        started = time.monotonic()
        second = await bucket.take(stop)
        return first, second, time.monotonic() - started

    first, second, waited = asyncio.run(scenario())
    assert first and not second and waited < 1


def test_secret_hides_its_value() -> None:
    """repr and str of a Secret show stars; reveal() gives the value."""
    secret = Secret("hunter2")
    assert "hunter2" not in f"{secret} {secret!r}" and secret.reveal() == "hunter2"

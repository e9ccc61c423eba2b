"""The bounce mailbox end to end, from the CLI: digests sent through a real SMTP server with a
VERP envelope sender, real Postfix DSNs (and other formats) delivered into a Maildir, then
`syndicator bounces`, `subscribers list/reactivate`, `status`, `explain` and `run --once`."""

from __future__ import annotations

import mailbox
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syndicator.config.model import load_config
from syndicator.db.bounces import BounceRecords
from syndicator.db.store import Store
from syndicator.ingest.reading import ingest

from .conftest import Run
from .databases import use_database
from .smtp_server import Handler, smtp_server
from .support import ITEMS, SEED, item_text
from .test_bounce_parsing import EXPECTED, FIXTURES

pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.usefixtures("no_secrets"),
]

PLACEHOLDER = b"bounces+d1-aaaaaaaaaaaaaaaa@lettre.example.org"
SUBSCRIBERS = [f"s{n}@example.org" for n in range(5)]
VERP = re.compile(r"bounces\+d[0-9]+-[a-z2-7]{16}@lettre\.example\.org")


def _project(
    root: Path, port: int, bounces: str = "{address: bounces@lettre.example.org, maildir: bounces}"
) -> Path:
    shutil.copytree(ITEMS, root / "items")
    listed = "".join(f"  - email: {s}\n    frequency: weekly\n" for s in SUBSCRIBERS)
    mailbox.Maildir(root / "bounces", create=True)
    config = use_database(
        root / "config.yaml",
        "email:\n"
        "  from: 'IREV <lettre@example.org>'\n"
        "  transport: smtp\n"
        f"  smtp: {{host: 127.0.0.1, port: {port}, starttls: false, timeout: 10}}\n"
        "  rate_per_second: 1000\n"
        "  lookback_days: {weekly: 4000, immediate: 4000}\n"
        f"  bounces: {bounces}\n"
        f"subscribers:\n{listed}",
    )
    loaded = load_config(config)
    with Store.open(loaded.database_url) as store:
        assert ingest(store, [loaded.items_path]).errors == []
    return config


def _send(run: Run, config: Path, handler: Handler) -> dict[str, str]:
    """`digest send`, then the envelope sender each recipient's latest digest had."""
    result = run("digest", "send", "--config", str(config))
    assert result.code == 0, result.err
    return {r.recipients[0]: r.sender for r in handler.accepted}


def _bounce(name: str, *, to: str, sender: str | None, message_id: str | None = None) -> bytes:
    """A fixture made about `to`, come back to `sender` (None: the bare bounce address)."""
    raw = (FIXTURES / name).read_bytes()
    raw = raw.replace(PLACEHOLDER, (sender or "bounces@lettre.example.org").encode())
    named = EXPECTED[name][2]
    if named:
        raw = raw.replace(named.encode(), to.encode())
    if message_id:
        raw = re.sub(rb"<digest\.1\.[^>]+>", message_id.encode(), raw)
    return raw


def _deliver(root: Path, *messages: bytes) -> None:
    box = mailbox.Maildir(root / "bounces")
    for message in messages:
        box.add(message)


def _folder(root: Path, name: str) -> list[bytes]:
    where = root / "bounces" / f".{name}" / "cur"
    return [p.read_bytes() for p in sorted(where.iterdir())] if where.exists() else []


def _state(run: Run, config: Path, address: str) -> str:
    listed = run("subscribers", "list", "--config", str(config)).out
    return next(line for line in listed.splitlines() if line.startswith(address))


def test_digests_leave_with_a_sealed_verp_envelope_sender(run: Run, tmp_path: Path) -> None:
    """With email.bounces.address each digest's MAIL FROM is bounces+TOKEN@domain, a token per
    digest; without it, email.from's address as before. The From: header never changes."""
    handler = Handler()
    with smtp_server(handler) as port:
        senders = _send(run, _project(tmp_path, port), handler)
    assert sorted(senders) == SUBSCRIBERS
    assert all(VERP.fullmatch(s) for s in senders.values()) and len(set(senders.values())) == len(SUBSCRIBERS)
    assert all(b"From: IREV <lettre@example.org>" in r.data for r in handler.accepted)

    plain, other = Handler(), tmp_path / "plain"
    other.mkdir()
    with smtp_server(plain) as port:
        config = _project(other, port, bounces="{maildir: bounces}")
        assert set(_send(run, config, plain).values()) == {"lettre@example.org"}


def test_real_postfix_hard_bounces_suppress_their_subscriber_at_once(run: Run, tmp_path: Path) -> None:
    """Postfix's DSNs (local unknown user, remote 550) come back to the VERP address: `bounces`
    counts them, suppresses those subscribers with the DSN's status and diagnostic, and moves
    each message to `processed`; the next send skips them."""
    handler = Handler()
    with smtp_server(handler) as port:
        config = _project(tmp_path, port)
        senders = _send(run, config, handler)
        # The DSN names another address than the subscriber's (a forward): the token decides.
        _deliver(
            tmp_path,
            _bounce(
                "postfix-local-unknown-user.eml", to="personne@localhost", sender=senders["s1@example.org"]
            ),
        )
        _deliver(
            tmp_path, _bounce("postfix-remote-550.eml", to="s2@example.org", sender=senders["s2@example.org"])
        )
        result = run("bounces", "--config", str(config))
        assert result.code == 0, result.err
        assert result.out.splitlines()[-1] == "2 hard, 0 soft, 0 complaints, 0 ignored, 0 unrecognised"
        assert _state(run, config, "s1@example.org").endswith(
            'bounced (hard bounce, 5.1.1, X-Postfix; unknown user: "personne")'
        )
        assert "bounced (hard bounce, 5.1.1, smtp; 550 5.1.1 <s2@example.org>" in _state(
            run, config, "s2@example.org"
        )
        assert _state(run, config, "s3@example.org").endswith("active")
        assert len(_folder(tmp_path, "processed")) == 2 and not list((tmp_path / "bounces" / "new").iterdir())

        (tmp_path / "items" / "new.txt").write_text(
            item_text("https://www.irev.fr/actualites-0/nouvelle"), encoding="utf-8"
        )
        run("ingest", "--config", str(config))
        handler.received.clear()
        _send(run, config, handler)
    assert sorted(r.recipients[0] for r in handler.accepted) == [
        "s0@example.org",
        "s3@example.org",
        "s4@example.org",
    ]


def test_soft_bounces_suppress_at_the_soft_limit_and_a_reactivation_counts_anew(
    run: Run, tmp_path: Path
) -> None:
    """A full mailbox (4.2.2) counts; two reports about one digest count once; the third digest
    that fails (soft_limit 3 within soft_days 30) suppresses. `reactivate` lifts it, and
    counting starts again from zero."""
    handler = Handler()
    with smtp_server(handler) as port:
        config = _project(tmp_path, port)
        outputs = []
        for number in range(3):
            if number:
                url = f"https://www.irev.fr/actualites-0/nouvelle-{number}"
                (tmp_path / "items" / f"new{number}.txt").write_text(item_text(url), encoding="utf-8")
                run("ingest", "--config", str(config))
            sender = _send(run, config, handler)["s1@example.org"]
            full = _bounce("postfix-remote-mailbox-full.eml", to="s1@example.org", sender=sender)
            if number == 0:  # a delay warning first, then the failure: one digest, counted once
                _deliver(tmp_path, _bounce("delayed-4.4.1.eml", to="s1@example.org", sender=sender))
            _deliver(tmp_path, full)
            outputs.append(run("bounces", "--config", str(config)).out)
            if number < 2:
                assert _state(run, config, "s1@example.org").endswith("active")
    assert outputs[0].splitlines()[-1] == "0 hard, 2 soft, 0 complaints, 0 ignored, 0 unrecognised"
    assert outputs[2].splitlines() == [
        "suppressed: s1@example.org",
        "0 hard, 1 soft, 0 complaints, 0 ignored, 0 unrecognised",
    ]
    assert "bounced (soft bounces, 4.2.2, 3 soft failures in 30 days; last: smtp; 452 4.2.2" in _state(
        run, config, "s1@example.org"
    )

    lifted = run("subscribers", "reactivate", "s1@example.org", "--config", str(config))
    assert lifted.code == 0 and "reactivated" in lifted.out
    assert _state(run, config, "s1@example.org").endswith("active")
    _deliver(tmp_path, _bounce("postfix-remote-mailbox-full.eml", to="s1@example.org", sender=None))
    assert run("bounces", "--config", str(config)).out.splitlines()[-1].startswith("0 hard, 1 soft")
    assert _state(run, config, "s1@example.org").endswith("active")  # one since the reactivation


def test_a_complaint_suppresses_and_no_admin_can_lift_it(run: Run, tmp_path: Path) -> None:
    """An ARF abuse report suppresses the subscriber as `complained`, over an earlier bounce;
    `reactivate` refuses, saying only the person's new confirmed sign-up can; `explain` says it."""
    handler = Handler()
    with smtp_server(handler) as port:
        config = _project(tmp_path, port)
        senders = _send(run, config, handler)
    sender = senders["s3@example.org"]
    _deliver(tmp_path, _bounce("postfix-remote-550.eml", to="s3@example.org", sender=sender))
    _deliver(tmp_path, _bounce("arf-abuse.eml", to="s3@example.org", sender=sender))
    result = run("bounces", "--config", str(config))
    assert result.out.splitlines()[-1] == "1 hard, 0 soft, 1 complaints, 0 ignored, 0 unrecognised"
    assert "complained (complaint, Feedback-Type: abuse)" in _state(run, config, "s3@example.org")

    refused = run("subscribers", "reactivate", "s3@example.org", "--config", str(config))
    assert refused.code == 1
    assert "complained about our mail" in refused.err and "hint: only the person can" in refused.err
    assert "complained" in _state(run, config, "s3@example.org")
    url = re.search(r"URL de la source[^<]*<([^>]+)>", SEED.read_text(encoding="utf-8")).group(1)  # type: ignore[union-attr]
    explained = run("explain", "s3@example.org", url, "--config", str(config))
    since = r"\d{4}-\d\d-\d\d \d\d:\d\d \S+"  # in the site's zone, the zone named
    assert re.search(rf"suppressed since {since} \(complained\): complaint", explained.out)
    assert explained.out.rstrip().endswith("=> does not go to this subscriber")


def test_auto_replies_and_challenges_are_ignored_never_counted(run: Run, tmp_path: Path) -> None:
    """Vacation replies ("Réponse automatique", Sieve, X-Autoreply, Precedence: auto_reply), a
    challenge-response and a not-spam report suppress no one and count nothing."""
    handler = Handler()
    with smtp_server(handler) as port:
        config = _project(tmp_path, port)
        senders = _send(run, config, handler)
    names = [n for n, e in EXPECTED.items() if e[0] == "ignored"]
    _deliver(tmp_path, *(_bounce(n, to="s0@example.org", sender=senders["s0@example.org"]) for n in names))
    result = run("bounces", "--config", str(config))
    assert (
        result.out.splitlines()[-1] == f"0 hard, 0 soft, 0 complaints, {len(names)} ignored, 0 unrecognised"
    )
    assert _state(run, config, "s0@example.org").endswith("active")
    with Store.open(load_config(config).database_url) as store:
        assert BounceRecords(store).soft_count("s0@example.org", _long_ago()) == 0


def _long_ago() -> datetime:
    return datetime(2000, 1, 1, tzinfo=UTC)


def test_without_a_token_the_recipient_or_message_id_must_be_a_recent_digest(
    run: Run, tmp_path: Path
) -> None:
    """A DSN without a (valid) VERP token suppresses only an address syndicator sent a digest
    to within soft_days: by its recipient, or by the returned Message-ID. A forged one naming a
    listed subscriber who was never mailed, or carrying a token that does not open, is
    `unrecognised`, suppresses no one, and is left for a person."""
    handler = Handler()
    with smtp_server(handler) as port:
        config = _project(tmp_path, port)
        senders = _send(run, config, handler)
    message_id = next(
        re.search(rb"Message-ID: (<[^>]+>)", r.data).group(1).decode()  # type: ignore[union-attr]
        for r in handler.accepted if r.recipients[0] == "s4@example.org"
    )  # fmt: skip
    forged_token = re.sub(r"-[a-z2-7]{16}@", "-" + "a" * 16 + "@", senders["s2@example.org"])
    _deliver(
        tmp_path,
        _bounce("postfix-remote-550.eml", to="s1@example.org", sender=None),  # by recipient
        _bounce("exchange-dsn-5.1.10.eml", to="alias@elsewhere.test", sender=None, message_id=message_id),
        _bounce("postfix-remote-550.eml", to="never.mailed@example.org", sender=None),
        _bounce("postfix-remote-550.eml", to="s2@example.org", sender=forged_token, message_id="<x@y>"),
    )
    # s2 was mailed, so its recipient still identifies it: forge against someone never mailed.
    config.write_text(
        config.read_text(encoding="utf-8") + "  - email: never.mailed@example.org\n", encoding="utf-8"
    )
    result = run("bounces", "--config", str(config))
    assert result.out.splitlines()[-1] == "3 hard, 0 soft, 0 complaints, 0 ignored, 1 unrecognised"
    assert "bounced" in _state(run, config, "s1@example.org")
    assert "bounced (hard bounce, 5.1.10" in _state(run, config, "s4@example.org")
    assert _state(run, config, "never.mailed@example.org").endswith("active")
    assert "never.mailed@example.org, to which no digest was sent in the last 30 days" in result.err
    assert "hint: these messages were moved to the 'unrecognised' folder" in result.err
    [left] = _folder(tmp_path, "unrecognised")
    assert b"never.mailed@example.org" in left


def test_bad_input_is_reported_and_nothing_else_is_lost(run: Run, tmp_path: Path) -> None:
    """A malformed DSN, a message that is no bounce, bytes that are no mail, and a 20 MB message
    are each reported with their file and moved to `unrecognised`; the good bounce among them
    is still applied."""
    handler = Handler()
    with smtp_server(handler) as port:
        config = _project(tmp_path, port)
        senders = _send(run, config, handler)
    huge = b"Subject: piece jointe\r\n\r\n" + b"A" * (20 * 1024 * 1024)
    _deliver(
        tmp_path,
        (FIXTURES / "malformed-dsn.eml").read_bytes(),
        (FIXTURES / "not-a-bounce.eml").read_bytes(),
        b"\x00\xff\xfe\x00",
        huge,
        _bounce("qmail-permanent.eml", to="s0@example.org", sender=senders["s0@example.org"]),
    )
    result = run("bounces", "--config", str(config))
    assert result.code == 0
    assert result.out.splitlines()[-1] == "1 hard, 0 soft, 0 complaints, 0 ignored, 4 unrecognised"
    lines = result.err.splitlines()
    assert any(
        re.match(
            rf"{re.escape(str(tmp_path / 'bounces'))}/new/\S+: .*larger than email\.bounces\.max_bytes", line
        )
        for line in lines
    )
    assert any("a delivery report naming no recipient that failed" in line for line in lines)
    assert any("neither a bounce nor a complaint" in line for line in lines)
    assert len(_folder(tmp_path, "unrecognised")) == 4 and len(_folder(tmp_path, "processed")) == 1
    assert any(len(m) > 20 * 1024 * 1024 for m in _folder(tmp_path, "unrecognised"))  # kept whole
    assert "bounced" in _state(run, config, "s0@example.org")


def test_an_unreadable_mailbox_is_reported_and_the_cycle_goes_on(run: Run, tmp_path: Path) -> None:
    """A folder that is not a Maildir where email.bounces.maildir points: `check` and `bounces`
    exit 1 naming it, with a hint; `run --once` says so too and still sends every digest."""
    handler = Handler()
    with smtp_server(handler) as port:
        config = _project(tmp_path, port)
        shutil.rmtree(tmp_path / "bounces")
        (tmp_path / "bounces").mkdir()  # a plain folder: a typo'd path to some other folder
        result = run("bounces", "--config", str(config))
        assert result.code == 1
        assert result.err.startswith(
            f"{tmp_path / 'bounces'}: not a Maildir: no new/ and no cur/ folder in it\nhint: "
        )
        checked = run("check", "--config", str(config))
        assert checked.code == 1 and "email.bounces.maildir" in checked.err and "not a Maildir" in checked.err
        once = run("run", "--once", "--config", str(config))
    assert "not a Maildir" in once.err and once.code == 1
    assert sorted(r.recipients[0] for r in handler.accepted) == SUBSCRIBERS


def test_a_maildir_not_made_yet_is_empty_with_a_warning(run: Run, tmp_path: Path) -> None:
    """Mail servers make the Maildir with the first bounce: until then `bounces` reads nothing,
    warns, and exits 0; `check` warns at the key's line; `run --once` sends as usual."""
    handler = Handler()
    with smtp_server(handler) as port:
        config = _project(tmp_path, port)
        shutil.rmtree(tmp_path / "bounces")
        result = run("bounces", "--config", str(config))
        assert (result.code, result.out) == (0, "0 hard, 0 soft, 0 complaints, 0 ignored, 0 unrecognised\n")
        assert result.err.startswith(f"{tmp_path / 'bounces'}: warning: no Maildir there yet")
        checked = run("check", "--config", str(config))
        assert "warning: no Maildir there yet" in checked.err
        once = run("run", "--once", "--config", str(config))
    assert once.code == 0, once.err
    assert "bounces: 0 hard" in once.out and "no Maildir there yet" in once.err


def test_run_once_reads_the_mailbox_before_sending(run: Run, tmp_path: Path) -> None:
    """`run --once` reads the bounce mailbox first: an address that bounced gets no digest."""
    handler = Handler()
    with smtp_server(handler) as port:
        config = _project(tmp_path, port)
        senders = _send(run, config, handler)
        _deliver(
            tmp_path, _bounce("exim-permanent.eml", to="s4@example.org", sender=senders["s4@example.org"])
        )
        (tmp_path / "items" / "new.txt").write_text(
            item_text("https://www.irev.fr/actualites-0/n"), encoding="utf-8"
        )
        handler.received.clear()
        config.write_text(
            config.read_text(encoding="utf-8").replace("frequency: weekly", "frequency: immediate"),
            encoding="utf-8",
        )
        once = run("run", "--once", "--config", str(config))
    assert "bounces: 1 hard, 0 soft, 0 complaints, 0 ignored, 0 unrecognised" in once.out, once.err
    assert "s4@example.org" not in {r.recipients[0] for r in handler.accepted}
    assert len(handler.accepted) == len(SUBSCRIBERS) - 1
    # The daemon's refresh runs this same cycle: its result, which `status` shows, has the figures.
    status = run("status", "--config", str(config)).out
    assert re.search(r"^job refresh: last run .*bounces 1 hard, 0 soft, 0 complaints", status, re.M), status


def test_status_shows_the_rates_of_the_last_sends_and_warns(run: Run, tmp_path: Path) -> None:
    """`status` gives each recent send's hard-bounce and complaint rates and warns past 2 % and
    0.1 % (here 1 of 5 each: 20 %)."""
    handler = Handler()
    with smtp_server(handler) as port:
        config = _project(tmp_path, port)
        senders = _send(run, config, handler)
    _deliver(
        tmp_path,
        _bounce("postfix-remote-550.eml", to="s1@example.org", sender=senders["s1@example.org"]),
        _bounce("arf-abuse.eml", to="s2@example.org", sender=senders["s2@example.org"]),
    )
    run("bounces", "--config", str(config))
    status = run("status", "--config", str(config)).out
    assert re.search(
        r"^bounces of weekly \S+ \S+ \S+: 5 sent, 1 hard \(20\.0%\), 1 complaints \(20\.00%\)$", status, re.M
    )
    assert "warning: hard bounces above 2% for that send" in status
    assert "warning: complaints above 0.1% for that send" in status


def test_one_run_over_every_fixture(run: Run, tmp_path: Path) -> None:
    """Every fixture at once, each come back to a subscriber's VERP address: the counts of the
    formats docs/bounces.md lists, and each message in the folder its kind says."""
    handler = Handler()
    with smtp_server(handler) as port:
        config = _project(tmp_path, port)
        senders = _send(run, config, handler)
    for number, name in enumerate(sorted(EXPECTED)):
        subscriber = SUBSCRIBERS[number % len(SUBSCRIBERS)]
        _deliver(tmp_path, _bounce(name, to=subscriber, sender=senders[subscriber]))
    kinds = [kind for kind, *_ in EXPECTED.values()]
    result = run("bounces", "--config", str(config))
    counts = f"{kinds.count('hard')} hard, {kinds.count('soft')} soft, {kinds.count('complaint')} complaints"
    counts += f", {kinds.count('ignored')} ignored, {kinds.count('unrecognised')} unrecognised"
    assert result.out.splitlines()[-1] == counts == "5 hard, 2 soft, 1 complaints, 6 ignored, 2 unrecognised"
    assert len(_folder(tmp_path, "unrecognised")) == 2 and len(_folder(tmp_path, "processed")) == 14


def test_a_tokenless_report_naming_several_subscribers_suppresses_none(run: Run, tmp_path: Path) -> None:
    """Each digest goes to one address, so a DSN without a token that names several recently
    mailed subscribers is made up (someone who knows the list): unrecognised, no one suppressed."""
    handler = Handler()
    with smtp_server(handler) as port:
        config = _project(tmp_path, port)
        _send(run, config, handler)
    raw = _bounce("postfix-remote-550.eml", to="s0@example.org", sender=None)
    block = re.search(rb"Final-Recipient: rfc822; s0@example.org\r?\n.*?\r?\n\r?\n", raw, re.S)
    assert block is not None
    others = b"".join(block.group(0).replace(b"s0@", f"s{n}@".encode()) for n in range(1, 5))
    _deliver(tmp_path, raw.replace(block.group(0), block.group(0) + others))
    result = run("bounces", "--config", str(config))
    assert result.out.splitlines()[-1] == "0 hard, 0 soft, 0 complaints, 0 ignored, 1 unrecognised"
    assert "names 5 subscribers without a VERP token" in result.err
    assert all(_state(run, config, s).endswith("active") for s in SUBSCRIBERS)


def test_an_idna_domain_bounces_and_is_reactivated_in_either_form(run: Run, tmp_path: Path) -> None:
    """config.yaml spells the domain in Unicode, the DSN names it in IDNA: the bounce still finds
    its subscriber by recipient, `subscribers list` shows it bounced, and `reactivate` takes
    the address in either form."""
    handler = Handler()
    with smtp_server(handler) as port:
        config = _project(tmp_path, port)
        config.write_text(
            config.read_text(encoding="utf-8") + "  - email: Contact@mairie-évry.fr\n    frequency: weekly\n",
            encoding="utf-8",
        )
        _send(run, config, handler)
    wire = "contact@xn--mairie-vry-h7a.fr"
    assert "Contact@xn--mairie-vry-h7a.fr" in {r.recipients[0] for r in handler.accepted}
    _deliver(tmp_path, _bounce("postfix-remote-550.eml", to=wire, sender=None))
    assert run("bounces", "--config", str(config)).out.splitlines()[-1].startswith("1 hard")
    assert "bounced (hard bounce, 5.1.1" in _state(run, config, "Contact@mairie-évry.fr")
    assert run("subscribers", "reactivate", wire, "--config", str(config)).code == 0
    assert _state(run, config, "Contact@mairie-évry.fr").endswith("active")

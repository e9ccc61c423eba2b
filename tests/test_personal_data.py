"""Access and erasure (RGPD articles 15 and 17) from the command line: `subscribers export`
prints or writes everything held about an address, `subscribers forget` erases it, leaving a
keyed hash where a record must stay, so that a suppressed address is never mailed again."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import MetaData, select

from syndicator.config.model import load_config
from syndicator.db.bounces import BounceRecords
from syndicator.db.ledger import Ledger
from syndicator.db.store import Store

from .conftest import Run

CLAIRE = "claire.martin@example.org"  # config.yaml: monthly, Roubaix, two types


def _store(project: Path) -> Store:
    if project not in _URLS:
        _URLS[project] = load_config(project / "config.yaml").database_url
    return Store.open(_URLS[project])


_URLS: dict[Path, str] = {}  # each project's store, known before its config.yaml is broken


def _sent(run: Run) -> None:
    assert run("ingest").code == 0
    assert run("digest", "send").code == 0


def _every_value(project: Path) -> str:
    """Every value of every table of the store, as one text."""
    with _store(project) as store, store.engine.connect() as connection:
        tables = MetaData()
        tables.reflect(connection)
        return "\n".join(
            repr(tuple(row)) for table in tables.sorted_tables for row in connection.execute(select(table))
        ).lower()


def test_export_prints_everything_held_about_an_address(run: Run, project: Path) -> None:
    """The JSON names the config entry with its line, the suppression, and each digest sent
    with its date and items."""
    _sent(run)
    with _store(project) as store:
        Ledger(store).suppress(CLAIRE, "unsubscribed", datetime(2026, 1, 2, tzinfo=UTC), "one click")
    result = run("subscribers", "export", "Claire.Martin@example.org")
    assert result.code == 0, result.err
    found = json.loads(result.out)
    assert found["address"] == "Claire.Martin@example.org"
    assert datetime.fromisoformat(found["exported"]).utcoffset() in (timedelta(hours=1), timedelta(hours=2))
    entry = found["config_entry"]
    lines = (project / "config.yaml").read_text(encoding="utf-8").splitlines()
    assert entry["email"] == CLAIRE and lines[entry["line"] - 1] == f"  - email: {CLAIRE}"
    assert entry["territoires"] == ["Roubaix"] and entry["frequency"] == "monthly"
    assert found["suppression"] == {
        "reason": "unsubscribed",
        "since": "2026-01-02T01:00:00+01:00",
        "detail": "one click",
    }
    [digest] = found["digests"]
    assert digest["state"] == "sent" and digest["frequency"] == "monthly" and digest["issued"]
    assert digest["items"] and all(item["url"].startswith("https://www.irev.fr/") for item in digest["items"])
    assert found["web_choices"] == [] and found["signup_requests"] == []


def test_export_to_a_file_is_readable_by_its_owner_only(run: Run, project: Path) -> None:
    """`-o FILE` writes the same JSON, mode 0600, and says where."""
    result = run("subscribers", "export", CLAIRE, "-o", "claire.json")
    assert result.code == 0 and result.out == f"{CLAIRE}: exported to claire.json\n"
    path = project / "claire.json"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert json.loads(path.read_text(encoding="utf-8"))["config_entry"]["email"] == CLAIRE


@pytest.mark.parametrize("command", ["export", "forget"])
def test_an_unknown_address_is_said_so_and_exits_1(run: Run, project: Path, command: str) -> None:
    """An address found neither in config.yaml nor in the store: a located message, exit 1,
    nothing printed on stdout, nothing changed."""
    before = (project / "config.yaml").read_bytes()
    result = run("subscribers", command, "personne@example.org")
    assert result.code == 1 and result.out == ""
    assert result.err.startswith("config.yaml: personne@example.org: unknown address")
    assert "hint: check the spelling" in result.err
    assert (project / "config.yaml").read_bytes() == before


def test_forget_leaves_nothing_readable_and_keeps_comments(run: Run, project: Path) -> None:
    """After `forget`, the config entry is gone with its comment and every other line stays;
    no table of the store holds the address in any form (nor the plain hash of it the
    Message-IDs carried); the counts of the ledger stay."""
    config = project / "config.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text.replace(f"  - email: {CLAIRE}", f"  # Claire, Roubaix\n  - email: {CLAIRE}"), encoding="utf-8"
    )
    _sent(run)
    with _store(project) as store:
        bounce = f"550 <{CLAIRE}> unknown"
        Ledger(store).suppress(CLAIRE, "hard-bounce", datetime(2026, 1, 2, tzinfo=UTC), bounce)
        sent_before = Ledger(store).counts()
    result = run("subscribers", "forget", CLAIRE)
    assert result.code == 0, result.err
    assert result.out.startswith(f"{CLAIRE} erased: config entry removed; digests: 1; digest items: ")
    after = config.read_text(encoding="utf-8")
    assert "claire" not in after.lower()
    entry = text[text.index(f"  - email: {CLAIRE}") : text.index("  - email: centre.social")]
    assert after == text.replace(entry, "")
    values = _every_value(project)
    assert "claire.martin" not in values and "hmac:" in values
    assert hashlib.sha256(CLAIRE.encode()).hexdigest()[:12] not in values  # once in the Message-IDs
    with _store(project) as store:
        assert Ledger(store).counts() == sent_before


def test_an_erased_suppressed_address_is_never_mailed_again(run: Run, project: Path) -> None:
    """Unsubscribed, then erased, then put back in config.yaml by an admin: the send still finds
    it suppressed, by its hash, and mails nothing; signing up again by the link is what lifts it."""
    _sent(run)
    with _store(project) as store:
        Ledger(store).suppress(CLAIRE, "unsubscribed", datetime(2026, 1, 2, tzinfo=UTC))
    assert run("subscribers", "forget", CLAIRE).code == 0
    added = run("subscribers", "add", CLAIRE, "--frequency", "immediate")
    assert added.code == 0
    outbox = set((project / "outbox").glob("*.eml"))
    sent = run("digest", "send", "--frequency", "immediate")
    assert sent.code == 0 and "suppressed 1" in sent.out
    assert set((project / "outbox").glob("*.eml")) == outbox
    listed = run("subscribers", "list").out
    [line] = [line for line in listed.splitlines() if line.startswith(CLAIRE)]
    assert line.split()[-1] == "unsubscribed", line  # found by its hash; no reason left to read
    with _store(project) as store:
        Ledger(store).unsuppress(CLAIRE)  # what confirming a new sign-up does
        assert CLAIRE not in Ledger(store).suppressed()


def test_an_erased_address_stays_suppressed_after_the_secret_changes(
    run: Run, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hash was made with the store's own secret; once `$SYNDICATOR_SECRET` is set (the
    store's secret kept nowhere else), the address is still found suppressed."""
    monkeypatch.delenv("SYNDICATOR_SECRET", raising=False)
    _sent(run)
    with _store(project) as store:
        Ledger(store).suppress(CLAIRE, "unsubscribed", datetime(2026, 1, 2, tzinfo=UTC))
    assert run("subscribers", "forget", CLAIRE).code == 0
    monkeypatch.setenv("SYNDICATOR_SECRET", "un tout autre secret, assez long pour en être un")
    with _store(project) as store:
        assert CLAIRE.upper() in Ledger(store).suppressed()


def test_forget_refuses_when_the_config_file_has_a_yaml_error(run: Run, project: Path) -> None:
    """The address may be in a file that does not load: forget says where the file is broken,
    and changes neither the file nor the store."""
    _sent(run)
    values = _every_value(project)
    config = project / "config.yaml"
    broken = config.read_text(encoding="utf-8").replace("  title: IREV", "  title: [IREV")
    config.write_text(broken, encoding="utf-8")
    result = run("subscribers", "forget", CLAIRE)
    assert result.code == 1 and result.out == ""
    assert result.err.startswith("config.yaml:")
    assert result.err.endswith("; nothing was erased: fix config.yaml first, then run forget again\n")
    assert config.read_text(encoding="utf-8") == broken
    assert _every_value(project) == values


def test_bounce_reports_are_exported_then_erased_and_the_bounce_stays_in_force(
    run: Run, project: Path
) -> None:
    """A hard bounce read from the bounce mailbox: the export shows the report (status and the
    server's words); `forget` deletes it and leaves nothing readable, and the suppression, kept
    as a hash, still stops every digest to that address."""
    _sent(run)
    diagnostic = f"smtp; 550 5.1.1 <{CLAIRE}>: Recipient address rejected"
    with _store(project) as store:
        records = BounceRecords(store)
        records.record(
            CLAIRE, "hard", datetime(2026, 3, 1, tzinfo=UTC), status="5.1.1", diagnostic=diagnostic
        )
        records.suppress(CLAIRE, "hard bounce", datetime(2026, 3, 1, tzinfo=UTC), status="5.1.1",
                         diagnostic=diagnostic)  # fmt: skip
    exported = json.loads(run("subscribers", "export", CLAIRE).out)
    assert [(r["kind"], r["status"], r["diagnostic"]) for r in exported["bounce_reports"]] == [
        ("hard", "5.1.1", diagnostic)
    ]
    erased = run("subscribers", "forget", CLAIRE)
    assert erased.code == 0 and "bounce reports: 1" in erased.out, erased.out
    assert CLAIRE not in _every_value(project)
    assert run("subscribers", "add", CLAIRE, "--frequency", "immediate").code == 0
    sent = run("digest", "send", "--frequency", "immediate")
    assert "suppressed 1" in sent.out, sent.out

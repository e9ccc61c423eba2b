"""Setting bounces up: the config keys as a careless admin writes them, and a database made
before bounces existed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert

from syndicator.db.bounces import BounceRecords
from syndicator.db.schema import MIGRATIONS, _v5_bounces, suppressions
from syndicator.db.store import Store

from .conftest import Run
from .databases import use_database

NOW = datetime(2026, 12, 5, 8, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("bounces", "message"),
    [
        ("{address: 'Bounces <bounces@lettre.example.org>'}", "is not a bare email address"),
        ("{address: bounces+list@lettre.example.org}", "no '+' in the bounce address"),
        ("{address: bounces}", "is not a bare email address"),
        (
            "{address: bounces@lettre.example.org, soft_limt: 2}",
            "unknown key 'soft_limt'; did you mean 'soft_limit'?",
        ),
        ("{soft_limit: 0}", "soft_limit: Input should be greater than or equal to 1"),
    ],
)
def test_check_names_the_line_of_a_bad_bounces_setting(
    run: Run, tmp_path: Path, bounces: str, message: str
) -> None:
    """A mistake under email.bounces is reported by `check` at its line, saying what to write."""
    config = use_database(
        tmp_path / "config.yaml", f"email:\n  from: lettre@example.org\n  bounces: {bounces}\n"
    )
    result = run("check", "--config", str(config))
    at = config.read_text(encoding="utf-8").splitlines().index(f"  bounces: {bounces}") + 1
    assert result.code == 1
    assert any(
        line.startswith(f"{config}:{at}: email.bounces") and message in line
        for line in result.err.splitlines()
    ), result.err


def test_a_database_from_before_bounces_is_brought_up_to_date(database_url: str) -> None:
    """A store made by the previous release (suppressions without status nor diagnostic) gains
    them and the bounce events on opening, keeping its suppressions."""
    before = MIGRATIONS[: MIGRATIONS.index(_v5_bounces)]
    with Store.open(database_url, before) as store, store.engine.begin() as connection:
        for column in ("status", "diagnostic"):  # as the previous release made the table
            connection.exec_driver_sql(f"ALTER TABLE suppressions DROP COLUMN {column}")
        connection.execute(
            insert(suppressions).values(subscriber="old@example.org", reason="invalid address", since=NOW)
        )
    with Store.open(database_url) as store:
        records = BounceRecords(store)
        old = records.suppression("old@example.org")
        assert old is not None and (old.reason, old.status) == ("invalid address", None)
        records.record("new@example.org", "hard", NOW, status="5.1.1", diagnostic="User unknown")
        assert records.suppress(
            "new@example.org", "hard bounce", NOW, status="5.1.1", diagnostic="User unknown"
        )
        assert records.suppression("new@example.org").status == "5.1.1"  # type: ignore[union-attr]


def test_bounces_without_a_bounce_mailbox_says_what_to_add(run: Run, project: Path) -> None:
    """`syndicator bounces` on the quick start's config (no email.bounces): exit 1, and a hint
    showing the YAML to add, written as YAML (single braces)."""
    result = run("bounces")
    assert result.code == 1
    assert "no bounce mailbox: email.bounces is not set" in result.err
    assert "hint: add `bounces: {address: bounces@your.domain, maildir: bounces/}` under email:" in result.err

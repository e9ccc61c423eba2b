"""`check` on a config an admin has only begun: it says what is missing (subscribers, a folder
for the database) instead of a run that silently sends nothing, or an SQLAlchemy message later;
and `--config` works before the command as after it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from syndicator.config.model import load_config
from syndicator.config.subscribers import Subscriber
from syndicator.db.choices import Consent, save_choice
from syndicator.db.store import Store

from .conftest import Run
from .databases import use_database

NO_SUBSCRIBERS = (
    "warning: no subscribers, so no digest will be sent: list some under subscribers: "
    "('syndicator subscribers add EMAIL' does it), or let people sign up at "
)


def test_check_on_an_empty_config_says_no_one_would_receive_a_digest(run: Run, project: Path) -> None:
    """An empty config.yaml (the sample items beside it) used to pass `check`, and `run` sent
    nothing, silently. Now `check` warns that there is no subscriber and how to add one."""
    (project / "config.yaml").write_text("", encoding="utf-8")
    result = run("check")
    assert result.code == 1
    assert result.err.splitlines() == [
        f"config.yaml: {NO_SUBSCRIBERS}http://127.0.0.1:8080/subscribe ('syndicator serve')"
    ]


def test_an_empty_subscribers_list_is_named_at_its_line(run: Run, project: Path) -> None:
    """A near-empty config with `subscribers:` left empty gets the warning at that line, with
    the sign-up address of its own web app."""
    (project / "config.yaml").write_text(
        "site:\n  title: IREV\nweb:\n  base_url: https://lettre.example.org/\nsubscribers:\n"
        "privacy: {controller: IREV, postal_address: Lille, dpo_contact: dpo@example.org}\n",
        encoding="utf-8",
    )
    result = run("check")
    assert result.code == 1
    assert result.err.splitlines() == [
        f"config.yaml:5: {NO_SUBSCRIBERS}https://lettre.example.org/subscribe ('syndicator serve')"
    ]


def test_a_confirmed_web_sign_up_is_an_audience(run: Run, project: Path) -> None:
    """With no subscriber in config.yaml but a confirmed sign-up in the store, someone will get
    digests: no warning."""
    use_database(project / "config.yaml", "subscribers: []\n")
    now = datetime.now(UTC)
    with Store.open(load_config(project / "config.yaml").database_url) as store:
        save_choice(
            store, Subscriber("inscrite@example.org", None, "weekly"), now=now,
            consent=Consent(now, "192.0.2.1", "2026-01"),
        )  # fmt: skip
    result = run("check")
    assert result.code == 0, result.err


@pytest.mark.sqlite_only
def test_check_and_status_name_a_database_folder_that_does_not_exist(run: Run, project: Path) -> None:
    """`database:` pointing into a missing folder: `check` reports it at its line with what to
    do; `status`, `ingest` and `serve` say the same instead of SQLAlchemy's message and link."""
    config = project / "config.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("sqlite:///syndicator.db", "sqlite:///donnees/syndicator.db"))
    line = next(n for n, row in enumerate(text.splitlines(), 1) if row.startswith("database:"))
    expected = [
        f"config.yaml:{line}: database: the folder {project.resolve() / 'donnees'} does not exist, "
        "so syndicator.db cannot be made there",
        f"hint: create the folder (mkdir -p {project.resolve() / 'donnees'}) or correct database: "
        "in config.yaml",
    ]
    checked = run("check")
    assert checked.code == 1
    assert checked.err.splitlines() == expected
    for command in ("status", "ingest", "serve"):
        result = run(command)
        assert result.code == 1, command
        assert result.err.splitlines() == expected, command
        assert "sqlalche.me" not in result.err
    (project / "donnees").mkdir()
    assert run("check").code == 0


@pytest.mark.sqlite_only
def test_a_database_that_names_a_folder_is_reported(run: Run, project: Path) -> None:
    """`database: sqlite:///feeds` (a folder) is named as such, with the file to write instead."""
    (project / "data").mkdir()
    config = project / "config.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("sqlite:///syndicator.db", "sqlite:///data"))
    result = run("check")
    assert result.code == 1
    assert f"database: {project.resolve() / 'data'} is a folder, not a database file" in result.err
    assert f"hint: name a file in it: database: sqlite:///{project.resolve() / 'data' / 'syndicator.db'}" in (
        result.err
    )


def test_config_and_verbose_work_before_the_command(run: Run, project: Path, tmp_path: Path) -> None:
    """`syndicator --config c.yaml check` was a usage error (exit 2); it reads c.yaml, as
    `check --config c.yaml` does. Given on both sides, the one after the command wins."""
    other = project / "autre.yaml"
    other.write_text((project / "config.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    before = run("--config", str(other), "check")
    assert before.code == 0, before.err
    assert before.out.startswith(f"{other}: ")
    both = run("--config", str(tmp_path / "absent.yaml"), "check", "--config", str(other))
    assert both.code == 0 and both.out.startswith(f"{other}: ")
    loud = run("-v", "--config", str(tmp_path / "absent.yaml"), "ingest")
    assert loud.code == 1 and "Traceback" in loud.err and "absent.yaml: no such file" in loud.err

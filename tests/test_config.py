"""config.yaml: defaults, and every problem reported at once with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from syndicator.config.model import load_config, parse_config
from syndicator.errors import ConfigError

from .support import ROOT


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, Path("config.yaml"))
    return [str(p) for p in caught.value.problems()]


def test_the_shipped_config_is_valid() -> None:
    """The example config.yaml loads, with its subscribers."""
    config = load_config(ROOT / "config.yaml")
    assert config.site.language == "fr" and config.site.timezone == "Europe/Paris"
    assert config.email.transport == "outbox"
    assert config.subscribers[0].email == "marie.dupont@example.org"
    assert config.items_path == ROOT / "items"


def test_every_problem_is_reported_at_once_with_its_line() -> None:
    """Several mistakes give one located message each, in file order."""
    text = """\
site:
  title: IREV
  timezone: Mars/Olympus
feed:
  max_items: 3
email:
  transport: smpt
subscribers:
  - email: pas-une-adresse
    frequency: hourly
  - email: a@example.org
  - email: A@example.org
"""
    assert problems(text) == [
        "config.yaml:3: site.timezone: unknown time zone 'Mars/Olympus'; use a name like 'Europe/Paris'",
        "config.yaml:4: unknown key 'feed'; did you mean 'feeds'?",
        "config.yaml:7: email.transport: Input should be 'outbox' or 'smtp', not 'smpt'",
        "config.yaml:9: subscriber #1 (pas-une-adresse), email: 'pas-une-adresse' is not an email address: "
        "An email address must have an @-sign.",
        "config.yaml:10: subscriber #1 (pas-une-adresse), frequency: Input should be 'immediate', 'daily',"
        " 'weekly' or 'monthly', not 'hourly'",
        "config.yaml:12: subscriber A@example.org is listed twice (first at line 11)",
    ]


def test_yaml_syntax_errors_name_the_line() -> None:
    """Broken YAML is reported where the parser stopped."""
    [message] = problems("site:\n  title: IREV\n  base_url: [unclosed\nitems:\n  path: x\n")
    assert message.startswith("config.yaml:") and "not valid YAML" in message


def test_a_missing_smtp_secret_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """The smtp transport needs the password variable the file names to be set."""
    monkeypatch.delenv("IREV_SMTP_PASSWORD", raising=False)
    text = "email:\n  transport: smtp\n  smtp:\n    host: mail\n    password_env: IREV_SMTP_PASSWORD\n"
    assert problems(text) == [
        "config.yaml:5: email.smtp.password_env names $IREV_SMTP_PASSWORD, which is not set;"
        " export it before running"
    ]
    monkeypatch.setenv("IREV_SMTP_PASSWORD", "secret")
    assert parse_config(text, Path("config.yaml")).email.smtp.host == "mail"


def test_empty_file_means_defaults_and_paths_are_relative_to_it(tmp_path: Path) -> None:
    """Every key has a default; relative paths start at the config file's folder."""
    config = parse_config("", tmp_path / "config.yaml")
    assert config.feeds.max_items == 50
    assert config.items_path == tmp_path / "items"
    assert config.database_url == f"sqlite:///{tmp_path.resolve() / 'syndicator.db'}"


def test_an_explicit_missing_config_is_an_error(tmp_path: Path) -> None:
    """--config naming no file is a clear error, not silent defaults."""
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "nope.yaml")

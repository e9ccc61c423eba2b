"""The README documents every command and every config section the code has."""

from __future__ import annotations

import argparse

from syndicator.cli.main import _parser
from syndicator.config.model import Config

from .support import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_every_command_is_documented() -> None:
    """Each subcommand of the CLI appears in the README's command table."""
    parser = _parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    for name in commands.choices:
        assert f"`syndicator {name}" in README, name


def test_every_config_key_is_documented() -> None:
    """Each top-level key of config.yaml appears in the README's config table."""
    for name, field in Config.model_fields.items():
        if not field.exclude:
            assert f"`{name}" in README, name


def test_quick_start_is_two_commands() -> None:
    """The quick start installs and runs the main job, then runs the CI's test command."""
    assert ".venv/bin/syndicator run --once" in README
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "scripts/check" in ci and "\nscripts/check\n" in README

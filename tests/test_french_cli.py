"""French for the admin: the command line's messages and `--help` in French when the locale is
French, English otherwise (and in CI logs); `status` in the site's time zone, the zone named."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from babel.messages.extract import extract_from_file
from babel.messages.pofile import read_po

from syndicator.config.model import load_config
from syndicator.db.store import Store
from syndicator.service.runlock import RunnerLock

from .conftest import Run

PACKAGE = Path(__file__).resolve().parent.parent / "syndicator"
CATALOGUE = PACKAGE / "locale" / "fr" / "LC_MESSAGES" / "syndicator.po"


def cli(*args: str, lang: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The real `syndicator` command in a child process, its locale set by LANG alone."""
    env = {k: v for k, v in os.environ.items() if k not in ("LANGUAGE", "LC_ALL", "LC_MESSAGES")}
    env["LANG"] = lang
    return subprocess.run(
        [sys.executable, "-m", "syndicator", *args],
        capture_output=True, text=True, check=False, env=env, cwd=cwd, timeout=120,
    )  # fmt: skip


def test_help_is_french_when_the_locale_is_french() -> None:
    """`syndicator --help` and a subcommand's help speak French under LANG=fr_FR.UTF-8: the
    usage line, section titles, -h and every command's description."""
    main = cli("--help", lang="fr_FR.UTF-8")
    assert main.returncode == 0
    assert main.stdout.startswith("utilisation\u00a0: syndicator ")  # French spaces: typography.py
    assert "affiche cette aide et termine" in main.stdout
    assert "vérifie config.yaml et les fichiers d’actualités" in main.stdout
    assert "show this help" not in main.stdout and "validate config.yaml" not in main.stdout
    send = cli("digest", "send", "--help", lang="fr_BE.UTF-8")
    assert "construit et compte, sans rien enregistrer ni envoyer" in send.stdout


@pytest.mark.parametrize("lang", ["C.UTF-8", "en_GB.UTF-8", "de_DE.UTF-8", "", "fr/../fr"])
def test_help_is_english_otherwise(lang: str) -> None:
    """Any other locale (CI's C.UTF-8, unset) gets the messages as written, in English; a value
    that is no language code (`fr/../fr`) is never used as a path."""
    result = cli("--help", lang=lang)
    assert result.returncode == 0
    assert result.stdout.startswith("usage: syndicator ")
    assert "validate config.yaml and the item files" in result.stdout


def test_messages_of_a_command_are_french(run: Run, project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`check` and `subscribers remove` say what they did in French; an unknown subscriber's
    error keeps its `file: message` form, and its hint is French."""
    monkeypatch.setenv("LANG", "fr_FR.UTF-8")
    checked = run("check")
    assert checked.code == 0
    assert re.search(r"config\.yaml\u00a0: 27 fichiers d’actualités vérifiés, OK$", checked.out.strip())
    missing = run("digest", "preview", "personne@example.org")
    assert missing.code == 1
    assert "config.yaml: pas d’abonné personne@example.org dans la configuration" in missing.err
    assert "conseil\u00a0: «\u00a0syndicator subscribers list\u00a0» montre qui est abonné" in missing.err
    removed = run("subscribers", "remove", "marie.dupont@example.org")
    assert removed.out.startswith("marie.dupont@example.org retiré de ")


def test_every_message_has_its_french_with_the_same_placeholders() -> None:
    """Each `_()` message of the code is in the catalogue, translated, keeping its `{names}`:
    a message added without its French fails here (scripts/update-catalogue adds it)."""
    with CATALOGUE.open("rb") as file:
        catalogue = read_po(file, locale="fr")
    missing, broken, seen = [], [], 0
    for path in sorted(PACKAGE.rglob("*.py")):
        for _line, message, _comments, _context in extract_from_file(
            "python", str(path), keywords={"_": None, "N_": None}
        ):
            assert isinstance(message, str)  # `_` takes one message, never a plural pair
            seen += 1
            found = catalogue.get(message)
            if found is None or not found.string:
                missing.append(f"{path.name}: {message}")
            elif sorted(re.findall(r"\{\w*\}", message)) != sorted(re.findall(r"\{\w*\}", str(found.string))):
                broken.append(message)
    assert seen > 80  # the command line's messages and help were all read
    assert missing == [], "messages without French; run scripts/update-catalogue, then translate"
    assert broken == []


def test_status_shows_times_in_the_site_zone_and_names_it(run: Run, project: Path) -> None:
    """With site.timezone America/New_York, every time `status` prints (the runner's, the jobs'
    last and next runs) is New York's with its zone (EST/EDT); none is UTC nor Paris's."""
    config_file = project / "config.yaml"
    text = config_file.read_text(encoding="utf-8").replace(
        "timezone: Europe/Paris", "timezone: America/New_York"
    )
    config_file.write_text(text, encoding="utf-8")
    assert run("run", "--once").code == 0
    config = load_config(config_file)
    with Store.open(config.database_url) as store, RunnerLock(store, "run"):
        result = run("status")
    assert result.code == 0
    lines = result.out.splitlines()
    assert "times in America/New_York" in lines
    stamps = re.findall(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(?::\d{2})? ([A-Z]{2,5})\b", result.out)
    assert len(stamps) >= 5  # the runner, and last and next runs of the jobs
    assert set(stamps) <= {"EST", "EDT"}, result.out
    assert "UTC" not in result.out and "CET" not in result.out
    runner = next(line for line in lines if line.startswith("runner: "))
    shown = re.search(r"since (\d{4}-\d{2}-\d{2} \d{2}:\d{2})", runner)
    assert shown is not None
    now = datetime.now(ZoneInfo("America/New_York")).replace(second=0, microsecond=0, tzinfo=None)
    assert abs((datetime.fromisoformat(shown.group(1)) - now).total_seconds()) < 180

"""French for the admin beyond `--help`: located problems and their hints, the stage summaries,
`purge` and `explain` speak French under a French locale, with French typography; the daemon's
log lines stay English whatever the locale."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from syndicator.typography import NBSP, NNBSP, french_text

from .conftest import Run
from .test_daemon import logged, stop, wait_for, write_config

CATALOGUE = Path(__file__).resolve().parent.parent / "syndicator/locale/fr/LC_MESSAGES/syndicator.po"
URL = "https://www.irev.fr/actualites-0/lassemblee-generale-du-gip-irev-adopte-le-programme-dactions-2022"


@pytest.fixture
def french(monkeypatch: pytest.MonkeyPatch) -> None:
    """The admin's locale is French (conftest has removed LANGUAGE, LC_ALL and LC_MESSAGES)."""
    monkeypatch.setenv("LANG", "fr_FR.UTF-8")


def edit(path: Path, old: str, new: str) -> int:
    """Replace `old` (once) in the file; the line it was on."""
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return text[: text.index(old)].count("\n") + 1


def test_a_yaml_mistake_is_located_and_its_hint_is_french(run: Run, project: Path, french: None) -> None:
    """An unquoted cron time (`*` reads as a YAML alias) gets `config.yaml:N:` and a French
    message, and its hint says in French to quote it, with French spaces and guillemets."""
    line = edit(project / "config.yaml", 'refresh: "*/10 * * * *"', "refresh: */10 * * * *")
    result = run("check")
    assert result.code == 1
    assert f"config.yaml:{line}: YAML invalide{NBSP}: " in result.err
    assert (
        f"conseil{NBSP}: une valeur qui commence par «{NBSP}*{NBSP}», comme une heure cron, se met entre "
        f'guillemets{NBSP}: refresh: "*/10 * * * *"'
    ) in result.err
    assert "not valid YAML" not in result.err and "hint:" not in result.err


def test_a_misspelt_key_and_a_bad_choice_are_french(run: Run, project: Path, french: None) -> None:
    """Pydantic's problems come out French: a misspelt key with its "did you mean", a value not
    among the choices (its "or" too), a French day name in a cron time; each at its line."""
    config = project / "config.yaml"
    key = edit(config, "  max_items: 50", "  max_itms: 50")
    choice = edit(config, "frequency: weekly", "frequency: weakly")
    day = edit(config, '"30 7 * * *"', '"30 7 * * lundi"')
    result = run("check")
    assert result.code == 1
    assert (
        f"config.yaml:{key}: feeds{NBSP}: clé inconnue «{NBSP}max_itms{NBSP}»{NNBSP}; vouliez-vous dire "
        f"«{NBSP}max_items{NBSP}»{NNBSP}?"
    ) in result.err
    assert (
        f"config.yaml:{choice}: abonné nº 1 (marie.dupont@example.org), frequency{NBSP}: doit être "
        "'immediate', 'daily', 'weekly' ou 'monthly', pas 'weakly'"
    ) in result.err
    assert (
        f"config.yaml:{day}: schedule.daily{NBSP}: '30 7 * * lundi'{NBSP}: "
        f"«{NBSP}lundi{NBSP}» est en français" in (result.err)
    )
    assert f"écrivez «{NBSP}mon{NBSP}» (ou 1)" in result.err
    assert "conseil" in result.err and "une heure de schedule: est une ligne cron" in result.err
    assert "unknown key" not in result.err and "did you mean" not in result.err


def test_a_bad_address_and_a_bad_item_are_explained_in_french(run: Run, project: Path, french: None) -> None:
    """email-validator's reason for a bad address, and an item file's problems (an error for an
    empty file, a warning for a date), are French too."""
    line = edit(project / "config.yaml", "email: marie.dupont@example.org", "email: marie.dupont.example.org")
    result = run("check")
    assert (
        f"config.yaml:{line}: abonné nº 1 (marie.dupont.example.org), email{NBSP}: "
        "'marie.dupont.example.org' n’est pas une adresse "
        f"e-mail{NBSP}: Une adresse e-mail doit avoir un @."
    ) in result.err
    edit(project / "config.yaml", "email: marie.dupont.example.org", "email: marie.dupont@example.org")
    (project / "items" / "vide.txt").write_text("\n", encoding="utf-8")
    item = project / "items" / "000_fef656b9b6bf81b1.txt"
    date = edit(item, "Publié le 30 novembre 2021", "Publié le 31 novembre 2021")
    parsed = run("parse", str(project / "items" / "vide.txt"), str(item))
    assert "vide.txt:1: fichier vide, pas une actualité" in parsed.err
    assert (
        f"000_fef656b9b6bf81b1.txt:{date}: attention{NBSP}: date de publication ignorée{NBSP}: "
        f"ce jour n’existe pas{NBSP}: 31/11/2021"
    ) in parsed.err


def test_run_once_and_purge_summaries_are_french(run: Run, project: Path, french: None) -> None:
    """`run --once` says what each stage did in French, as does a second run with nothing due;
    `purge` says what it removed in French."""
    first = run("run", "--once")
    assert first.code == 0, first.err
    lines = first.out.splitlines()
    assert "nouvelles 27, modifiées 0, inchangées 0, erreurs 0" in lines
    assert f"flux{NBSP}: écrits 94, inchangés 0, supprimés 0" in lines
    assert f"lettres (monthly){NBSP}: envoyées 2, vides 0, en échec 0, bloquées 0" in lines
    again = run("run", "--once")
    assert f"lettres{NBSP}: aucune à envoyer" in again.out.splitlines()
    purged = run("purge")
    assert purged.code == 0
    assert f"demandes d’inscription et d’export supprimées{NBSP}: 0" in purged.out.splitlines()
    assert f"lettres agrégées en totaux mensuels puis supprimées{NBSP}: 0 (0 actualités)" in purged.out
    assert not re.search(r"\b(new|written|sent|deleted)\b", first.out + again.out + purged.out)


def test_explain_gives_its_reasons_in_french(run: Run, project: Path, french: None) -> None:
    """Each rule's say in `explain`, and a mistyped URL's error and hint, are French."""
    assert run("ingest").code == 0
    result = run("explain", "marie.dupont@example.org", URL)
    assert result.code == 0
    assert result.out.splitlines() == [
        f"bloque{NBSP}: thematiques{NBSP}: l’actualité a «{NBSP}Politique de la ville - DSU{NBSP}», "
        f"l’abonné suit «{NBSP}Éducation{NBSP}»",
        f"passe{NBSP}: territoires{NBSP}: «{NBSP}Région Hauts de France{NBSP}» de l’actualité est "
        "au-dessus de "
        f"«{NBSP}Nord{NBSP}», qui est suivi",
        f"passe{NBSP}: aucun choix dans types{NBSP}: tous",
        f"bloque{NBSP}: publiée le 2021-11-30, hors de la fenêtre weekly de 14 jours",
        "=> ne part pas à cet abonné",
    ]
    missing = run("explain", "marie.dupont@example.org", URL + "/")
    assert missing.code == 1
    assert f"aucune actualité d’URL {URL}/ dans la base" in missing.err
    assert f"conseil{NBSP}: vouliez-vous dire {URL}{NNBSP}?" in missing.err


def test_the_same_messages_stay_english_in_ci(run: Run, project: Path) -> None:
    """Under CI's C.UTF-8 locale the messages are the English ones, as written in the code."""
    edit(project / "config.yaml", "  max_items: 50", "  max_itms: 50")
    result = run("check")
    assert "feeds: unknown key 'max_itms'; did you mean 'max_items'?" in result.err
    edit(project / "config.yaml", "  max_itms: 50", "  max_items: 50")
    assert "27 new, 0 updated, 0 unchanged, 0 errors" in run("run", "--once").out


def test_the_daemons_log_stays_english_under_a_french_locale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`syndicator run` started under LANG=fr_FR.UTF-8 logs its cycle's figures, an item's
    warning and a broken config's problem in English, for whoever reads the logs."""
    config = write_config(tmp_path, subscribers=1)
    item = tmp_path / "items" / "000_fef656b9b6bf81b1.txt"
    edit(item, "Publié le 30 novembre 2021", "Publié le 31 novembre 2021")
    monkeypatch.setenv("LANG", "fr_FR.UTF-8")
    with (tmp_path / "run.log").open("a", encoding="utf-8") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "syndicator", "run", "--config", str(config)],
            stdout=log_file, stderr=log_file, cwd=tmp_path, text=True,
        )  # fmt: skip
    try:
        wait_for(lambda: "job start:" in logged(config), "the start cycle")
        edit(config, "frequency: daily", "frequency: weakly")
        process.send_signal(1)  # SIGHUP: read the config again, now broken
        wait_for(lambda: "keeping the last good config" in logged(config), "the reload")
        assert stop(process) < 30
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    log = logged(config)
    assert "items 27 new, 0 updated, 0 unchanged, 0 errors; feeds 94 written, 0 unchanged, 0 removed" in log
    assert "digests daily: sent 1, empty 0, failed 0, suppressed 0" in log
    assert "warning: publication date ignored: no such day: 31/11/2021" in log
    assert "frequency: Input should be" in log or "frequency: should be 'immediate'" in log
    assert (
        "nouvelles" not in log and "envoyées" not in log and "ce jour" not in log and "doit être" not in log
    )


def test_every_french_message_has_french_typography() -> None:
    """Each French message of the catalogue has its no-break spaces (narrow before ; ? !, before
    : and inside « ») and typographic apostrophes: the spaces `french_text` would put are there."""
    with CATALOGUE.open("rb") as file:
        catalogue = read_po(file, locale="fr")
    wrong = [
        str(message.string)
        for message in catalogue
        if message.id
        and message.string
        and (french_text(str(message.string)) != message.string or re.search(r"\w'\w", str(message.string)))
    ]
    assert wrong == []
    assert sum(1 for message in catalogue if message.id) > 300


def test_a_text_is_english_in_json_and_pickles_whole(french: None) -> None:
    """A message built below the command line is its English string for logs and JSON, and
    pickles (to another process) with what it needs to be translated."""
    import pickle

    from syndicator.i18n import N_, shown

    text = N_("no such day: {day}/{month}/{year}", day=31, month=11, year=2021)
    assert json.dumps({"why": text}) == '{"why": "no such day: 31/11/2021"}'
    again = pickle.loads(pickle.dumps(text))
    assert str(again) == "no such day: 31/11/2021"
    assert shown(again) == f"ce jour n’existe pas{NBSP}: 31/11/2021"
    assert again.msgid == text.msgid and again.fields == text.fields


@pytest.mark.sqlite_only
def test_a_database_that_cannot_be_made_is_said_in_french(run: Run, project: Path, french: None) -> None:
    """A SQLite file in a folder that does not exist: the problem at the `database:` line and
    its hint are French."""
    line = edit(project / "config.yaml", "database: sqlite:///", "database: sqlite:///nulle/part/")
    result = run("check")
    assert result.code == 1
    assert f"config.yaml:{line}: database: le dossier " in result.err
    assert "nulle/part n’existe pas, " in result.err
    assert f"conseil{NBSP}: créez le dossier (mkdir -p " in result.err


def test_each_translation_keeps_its_fields_and_their_formats() -> None:
    """A French message has the same `{fields}` as its English, format included (`{value!r}`,
    `{day:%Y-%m-%d}`): a field renamed in a translation would otherwise lose its value."""
    with CATALOGUE.open("rb") as file:
        catalogue = read_po(file, locale="fr")
    fields = re.compile(r"(?<!\{)\{[^{}]*\}(?!\})")
    differ = [
        str(message.id)
        for message in catalogue
        if message.id and message.string
        and sorted(fields.findall(str(message.id))) != sorted(fields.findall(str(message.string)))
    ]  # fmt: skip
    assert differ == []


def test_forget_and_an_empty_bounce_mailbox_are_said_in_french(run: Run, project: Path, french: None) -> None:
    """`subscribers forget` says what it erased in French; `bounces` on a Maildir not made yet
    warns in French, at the Maildir's path."""
    assert run("run", "--once").code == 0
    erased = run("subscribers", "forget", "claire.martin@example.org")
    assert erased.code == 0, erased.err
    assert erased.out.startswith(
        f"claire.martin@example.org effacée{NBSP}: entrée retirée de la configuration{NNBSP}; "
        f"lettres{NBSP}: 1{NNBSP}; actualités des lettres{NBSP}: "
    )
    edit(project / "config.yaml", "  # bounces: {address", "  bounces: {address")
    result = run("bounces")
    assert result.code == 0, result.err
    assert f"bounces: attention{NBSP}: pas encore de Maildir ici, rien à lire" in result.err
    assert "définitifs 0, temporaires 0, plaintes 0, ignorés 0, non reconnus 0" in result.out

"""Messages an admin can act on: config.yaml and `check` say what is wrong, where, and what to do."""

from __future__ import annotations

from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest

from syndicator.config.model import load_config, parse_config
from syndicator.db.ledger import Ledger
from syndicator.db.store import Store
from syndicator.errors import ConfigError

from .conftest import Run


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, Path("config.yaml"))
    return [str(p) for p in caught.value.problems()]


def hint(text: str) -> str | None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, Path("config.yaml"))
    return caught.value.hint


def test_an_unknown_key_under_a_subscriber_lists_the_keys_that_exist() -> None:
    """`interests:` under a subscriber names the subscriber and lists the keys a subscriber has."""
    text = "subscribers:\n  - email: a@example.org\n    interests: [Santé]\n"
    assert problems(text) == [
        "config.yaml:3: subscriber #1 (a@example.org): unknown key 'interests'; "
        "known keys: email, name, frequency, thematiques, territoires, types"
    ]


def test_an_unquoted_number_says_to_quote_it() -> None:
    """A commune code written bare (`59350`) is read as a number: the message says to quote it."""
    text = "subscribers:\n  - email: a@example.org\n    territoires: [Roubaix, 59350]\n"
    assert problems(text) == [
        "config.yaml:3: subscriber #1 (a@example.org), territoires entry 2: 59350 is a number here; "
        "write it in quotes ('59350') to mean the name or code"
    ]


def test_a_bare_yes_no_word_or_a_scalar_for_a_section_says_what_to_write() -> None:
    """`true` where a name belongs says to quote it; a subscriber that is not keys says so."""
    text = "subscribers:\n  - email: a@example.org\n    types: [true]\n  - 3\n"
    assert problems(text) == [
        "config.yaml:3: subscriber #1 (a@example.org), types entry 1: true reads as yes/no here; "
        "write it in quotes to mean a name",
        "config.yaml:4: subscriber #2: expected `key: value` lines here, not 3",
    ]


def test_positions_count_from_one_and_name_the_subscribers_email() -> None:
    """A problem in the second subscriber says #2 and its address, not `subscribers.1`."""
    text = (
        "subscribers:\n  - email: a@example.org\n  - email: b@example.org\n    frequency: hourly\n"
        "  - name: Sans Adresse\n"
    )
    found = problems(text)
    assert found[0].startswith("config.yaml:4: subscriber #2 (b@example.org), frequency: ")
    assert found[1] == "config.yaml:5: subscriber #3: 'email' is required"
    assert not any("subscribers.1" in p or "subscribers.2" in p for p in found)


def test_a_tab_says_tabs_are_not_allowed() -> None:
    """A tab in the indentation is named as such, at its line, with the fix."""
    text = "subscribers:\n  - email: a@example.org\n\tfrequency: daily\n"
    assert problems(text) == ["config.yaml:3: not valid YAML: tabs are not allowed, use spaces"]
    assert hint(text) == "indent with spaces only (YAML forbids tabs)"


def test_an_unclosed_bracket_is_reported_at_the_brackets_line() -> None:
    """`[` never closed: the line given is the bracket's, not the line where the parser gave up."""
    text = (
        "subscribers:\n  - email: a@example.org\n    territoires: [Roubaix,\n      Lille\n\n"
        "    thematiques: [Santé]\n"
    )
    [message] = problems(text)
    assert message.startswith("config.yaml:3: not valid YAML: the '[' opened here is not closed")
    assert "at line 6" in message
    assert hint(text) == "close it with ']' after its last value, and separate the values with ','"


def _check_with(project: Path, run: Run, replacement: str) -> list[str]:
    config = project / "config.yaml"
    text = config.read_text(encoding="utf-8")
    assert "territoires: [Nord]" in text
    config.write_text(text.replace("territoires: [Nord]", replacement, 1), encoding="utf-8")
    result = run("check")
    assert result.code == 1
    return [line for line in result.err.splitlines() if "territoire" in line]


def test_did_you_mean_proposes_nothing_rather_than_a_wrong_place(run: Run, project: Path) -> None:
    """`Paris` is not `Paars`, `Lille Métropole` is not `Amiens Métropole`: only close matches
    (a few typos, or every word of the label) are proposed."""
    lines = _check_with(project, run, "territoires: [Lille Métropole, Roubiax, Amiens Metropol, Xyzzyville]")
    assert len(lines) == 4
    joined = "\n".join(lines)
    assert "Paars" not in joined and "'Amiens Métropole'" not in lines[0]
    assert lines[0].endswith(
        "unknown territoire 'Lille Métropole'; did you mean 'Métropole Européenne de Lille'?"
    )
    assert lines[1].endswith("unknown territoire 'Roubiax'; did you mean 'Roubaix'?")
    assert lines[2].endswith("unknown territoire 'Amiens Metropol'; did you mean 'Amiens Métropole'?")
    assert lines[3].endswith("unknown territoire 'Xyzzyville'")


def test_a_commune_outside_the_region_is_named_as_such(run: Run, project: Path) -> None:
    """`Paris` and `Marseille` are real places outside Hauts-de-France: the message says so
    instead of guessing a look-alike commune of the région."""
    lines = _check_with(project, run, "territoires: [Marseille, Paris]")
    assert len(lines) == 2
    assert "territoire 'Marseille' is a commune of Bouches-du-Rhône (13), outside Hauts-de-France" in lines[0]
    assert "territoire 'Paris' is" in lines[1] and "a commune of Paris (75)" in lines[1]
    assert all("did you mean" not in line for line in lines)


def test_a_misspelt_thematique_still_gets_its_suggestion(run: Run, project: Path) -> None:
    """A typo a letter away from a thématique is still suggested, accents aside."""
    config = project / "config.yaml"
    text = config.read_text(encoding="utf-8").replace("thematiques: [Éducation]", "thematiques: [Educaton]")
    config.write_text(text, encoding="utf-8")
    result = run("check")
    assert result.code == 1
    assert "unknown thématique 'Educaton'; did you mean 'Éducation'?" in result.err


WATTRELOS = (
    "https://www.irev.fr/actualites-0/wattrelos-lance-son-premier-budget-participatif-dans-les-quartiers"
)


def test_explain_with_an_unknown_url_exits_1(run: Run, project: Path) -> None:
    """An URL the store does not hold is an error (exit 1), with the stored URL it looks like."""
    run("ingest")
    unknown = run("explain", "claire.martin@example.org", "https://www.irev.fr/nulle-part")
    assert (unknown.code, unknown.out) == (1, "")
    assert unknown.err.splitlines() == [
        "syndicator: no item with the URL https://www.irev.fr/nulle-part in the store",
        "hint: run 'syndicator ingest' first; 'syndicator parse FILE' shows an item's URL",
    ]
    mistyped = WATTRELOS.replace("https://www.", "http://") + "/"
    near = run("explain", "claire.martin@example.org", mistyped)
    assert near.code == 1
    assert near.err.splitlines()[-1] == f"hint: did you mean {WATTRELOS}?"
    assert run("explain", "claire.martin@example.org", WATTRELOS).code == 0


def test_subscribers_add_stores_official_spellings_and_warns_at_once(run: Run, project: Path) -> None:
    """`subscribers add` writes known terms as items and the hierarchy spell them, and warns,
    at the new entry's lines, about the terms nothing knows; the subscriber is added anyway."""
    result = run(
        "subscribers", "add", "nouveau@example.org",
        "--thematique", "sante", "--thematique", "Educaton",
        "--territoire", "mel", "--territoire", "saint-aubin (59)", "--territoire", "Marseille",
        "--type", "actu de l'irev",
    )  # fmt: skip
    assert result.code == 0, result.err
    assert result.out == "nouveau@example.org added to config.yaml\n"
    text = (project / "config.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    entry = lines[lines.index("  - email: nouveau@example.org") :]
    assert entry[2] == "    thematiques: [Santé, Educaton]"
    assert entry[3] == "    territoires: [Métropole Européenne de Lille, Saint-Aubin (59), Marseille]"
    assert entry[4] == "    types: [Actu de l'IREV]"
    thematiques_line, territoires_line = len(lines) - len(entry) + 3, len(lines) - len(entry) + 4
    warnings = result.err.splitlines()
    assert warnings[0] == (
        f"config.yaml:{thematiques_line}: warning: nouveau@example.org: unknown thématique 'Educaton'; "
        "did you mean 'Éducation'?"
    )
    assert warnings[1].startswith(
        f"config.yaml:{territoires_line}: warning: nouveau@example.org: territoire 'Marseille' is a "
        "commune of Bouches-du-Rhône (13), outside Hauts-de-France"
    )
    assert warnings[2].startswith("hint: ")
    assert len(warnings) == 3


def test_subscribers_add_with_known_terms_is_silent(run: Run, project: Path) -> None:
    """Terms that items and the hierarchy know give no warning, with or without a store."""
    run("ingest")
    result = run("subscribers", "add", "n@example.org", "--territoire", "ROUBAIX", "--thematique", "Santé")
    assert (result.code, result.err) == (0, "")
    assert "    territoires: [Roubaix]\n" in (project / "config.yaml").read_text(encoding="utf-8")


def _ledger_counts(project: Path) -> dict[str, int]:
    with Store.open(load_config(project / "config.yaml").database_url) as store:
        return Ledger(store).counts()


def test_digest_preview_with_nothing_new_writes_a_marked_sample(run: Run, project: Path) -> None:
    """After a send, `digest preview` still writes the digest, with the latest matching items,
    marked « Exemple » in its subject, text and HTML; the ledger is left as it was."""
    run("ingest")
    first = run("digest", "preview", "claire.martin@example.org", "--out", "avant")
    assert first.code == 0, first.err
    assert "Exemple" not in (project / "avant" / "digest-claire-martin-example-org.txt").read_text("utf-8")
    assert run("run", "--once").code == 0
    counts = _ledger_counts(project)
    result = run("digest", "preview", "claire.martin@example.org", "--out", "apres")
    assert result.code == 0, result.err
    assert result.out.splitlines()[0] == (
        "claire.martin@example.org: nothing new to send; here is a sample with the latest matching items"
    )
    stem = project / "apres" / "digest-claire-martin-example-org"
    text = stem.with_suffix(".txt").read_text(encoding="utf-8")
    assert text.startswith("Exemple : cette lettre montre les dernières actualités")
    assert "Bonjour Claire Martin," in text
    html = stem.with_suffix(".html").read_text(encoding="utf-8")
    assert "Elle n’a pas été envoyée." in html
    message = BytesParser(policy=policy.default).parsebytes(stem.with_suffix(".eml").read_bytes())
    assert str(message["Subject"]).startswith("Exemple — IREV — ")
    assert result.out.rstrip().endswith("items)") and "Exemple — " in result.out
    assert _ledger_counts(project) == counts
    assert run("digest", "send").out.startswith("sent 0, ")


def test_digest_preview_when_nothing_matches_writes_nothing(run: Run, project: Path) -> None:
    """A subscriber whose interests match no stored item gets no sample: the command says so."""
    run("ingest")
    assert run("subscribers", "add", "rien@example.org", "--thematique", "Astronomie").code == 0
    result = run("digest", "preview", "rien@example.org", "--out", "vide")
    assert (result.code, result.out) == (
        0,
        "rien@example.org: nothing new to send, and no stored item matches their interests\n",
    )
    assert not (project / "vide").exists()


@pytest.mark.sqlite_only  # the unreadable store is a file of garbage
def test_subscribers_add_with_an_unreadable_store_uses_the_item_files(run: Run, project: Path) -> None:
    """A store that cannot be read does not stop `subscribers add`: the items' terms come from
    the item files, and known terms still get their spelling without a warning."""
    (project / "syndicator.db").write_bytes(b"pas une base SQLite\n" * 100)
    result = run("subscribers", "add", "n@example.org", "--thematique", "sante")
    assert (result.code, result.err) == (0, "")
    assert "    thematiques: [Santé]\n" in (project / "config.yaml").read_text(encoding="utf-8")


def test_subscribers_add_to_a_broken_config_changes_nothing(run: Run, project: Path) -> None:
    """A config with a problem elsewhere is reported, located, and left as it was."""
    config = project / "config.yaml"
    broken = config.read_text(encoding="utf-8").replace("max_items: 50", "max_items: beaucoup")
    config.write_text(broken, encoding="utf-8")
    result = run("subscribers", "add", "n@example.org")
    assert result.code == 1
    assert "feeds.max_items" in result.err.splitlines()[0]
    assert result.err.splitlines()[-1] == "hint: config.yaml was not changed; fix it first"
    assert config.read_text(encoding="utf-8") == broken

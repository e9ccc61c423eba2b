"""Adding and removing subscribers in config.yaml: comments, order and untouched bytes survive."""

from __future__ import annotations

import difflib
import os
import re
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from syndicator.config.edit import add_subscriber, remove_subscriber
from syndicator.config.model import load_config, parse_config
from syndicator.errors import ConfigError

from .support import ROOT

_COMMENT = re.compile(r"(?:^|\s)(#.*)$")


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A copy of the shipped config.yaml, alone in its folder."""
    path = tmp_path / "config.yaml"
    shutil.copyfile(ROOT / "config.yaml", path)
    return path


def comments(text: str) -> list[str]:
    """Every comment of a YAML text, in order (the shipped file has no '#' inside values)."""
    return [m.group(1) for line in text.splitlines() if (m := _COMMENT.search(line))]


def entry_lines(text: str, email: str) -> list[str]:
    """The lines of one `  - email: ...` entry of the shipped layout, found without the code under test."""
    lines = text.splitlines()
    start = lines.index(f"  - email: {email}")
    end = start + 1
    while end < len(lines) and lines[end].startswith("    "):
        end += 1
    return lines[start:end]


def changes(before: str, after: str) -> tuple[list[str], list[str]]:
    """The lines difflib sees removed and added."""
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    return [d[2:] for d in diff if d.startswith("- ")], [d[2:] for d in diff if d.startswith("+ ")]


def refused(path: Path, call: Callable[..., None], *args: object, **kwargs: object) -> ConfigError:
    """Run an edit that must fail; check that the file and its folder are exactly as before."""
    before, listing = path.read_bytes(), sorted(os.listdir(path.parent))
    with pytest.raises(ConfigError) as caught:
        call(path, *args, **kwargs)
    assert path.read_bytes() == before
    assert sorted(os.listdir(path.parent)) == listing  # no temp file left behind
    return caught.value


def test_an_added_subscriber_parses_back_with_its_interests(config: Path) -> None:
    """The new subscriber is the last one, with name, frequency and the three lists as given."""
    add_subscriber(
        config,
        "nouvelle.personne@example.org",
        name="Nouvelle Personne",
        frequency="daily",
        thematiques=["Éducation", "Habitat - Renouvellement urbain"],
        territoires=["Roubaix"],
    )
    subscriber = load_config(config).subscribers[-1]
    assert subscriber.email == "nouvelle.personne@example.org"
    assert subscriber.name == "Nouvelle Personne"
    assert subscriber.frequency == "daily"
    assert subscriber.thematiques == ["Éducation", "Habitat - Renouvellement urbain"]
    assert subscriber.territoires == ["Roubaix"]
    assert subscriber.types == []


def test_add_inserts_only_the_entry_and_keeps_every_other_byte(config: Path) -> None:
    """Only the entry's lines are added, in the shipped style, right after the last entry."""
    before = config.read_text(encoding="utf-8")
    last = load_config(config).subscribers[-1].email
    add_subscriber(
        config, "a@example.org", name="A", thematiques=["Éducation"], territoires=["Nord", "Lille"]
    )
    after = config.read_text(encoding="utf-8")

    removed, added = changes(before, after)
    assert removed == []
    assert added == [
        "  - email: a@example.org",
        "    name: A",
        "    frequency: weekly",
        "    thematiques: [Éducation]",
        "    territoires: [Nord, Lille]",
    ]
    # Byte for byte: the old file cut where the last entry ends, the new lines in between.
    old_lines = before.splitlines(keepends=True)
    cut = old_lines.index(entry_lines(before, last)[-1] + "\n") + 1
    new_lines = after.splitlines(keepends=True)
    assert new_lines == [*old_lines[:cut], *(line + "\n" for line in added), *old_lines[cut:]]


def test_every_comment_survives_an_add_and_a_remove(config: Path) -> None:
    """Adding, then removing an entry that has no comment of its own, keeps every comment."""
    original = comments(config.read_text(encoding="utf-8"))
    assert len(original) > 10
    add_subscriber(config, "b@example.org", frequency="monthly", types=["Événement"])
    assert comments(config.read_text(encoding="utf-8")) == original

    text = config.read_text(encoding="utf-8")
    assert comments("\n".join(entry_lines(text, "karim.benali@example.org"))) == []
    remove_subscriber(config, "karim.benali@example.org")
    assert comments(config.read_text(encoding="utf-8")) == original


def test_remove_deletes_exactly_the_entry_lines(config: Path) -> None:
    """For each shipped subscriber, first, middle or last: only that entry's lines go."""
    shipped = config.read_bytes()
    emails = [s.email for s in load_config(config).subscribers]
    assert len(emails) >= 3
    for email in emails:
        config.write_bytes(shipped)
        before = shipped.decode("utf-8")
        remove_subscriber(config, email.upper())
        after = config.read_text(encoding="utf-8")

        removed, added = changes(before, after)
        assert added == []
        assert removed == entry_lines(before, email)
        others = comments("\n".join(line for line in before.splitlines() if line not in removed))
        assert comments(after) == others
        assert [s.email for s in load_config(config).subscribers] == [e for e in emails if e != email]


def test_remove_takes_the_comments_attached_to_the_entry(tmp_path: Path) -> None:
    """Comments just above an entry and indented under it go with it; the list's header stays."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "subscribers:\n"
        "  # one entry per person\n"
        "  - email: a@example.org\n"
        "  # B, from the mairie\n"
        "  - email: b@example.org\n"
        "    # frequency: daily\n"
        "  - email: c@example.org\n"
        "\n"
        "# the web pages\n"
        "web:\n"
        "  port: 8080\n",
        encoding="utf-8",
    )
    remove_subscriber(path, "b@example.org")
    assert path.read_text(encoding="utf-8") == (
        "subscribers:\n"
        "  # one entry per person\n"
        "  - email: a@example.org\n"
        "  - email: c@example.org\n"
        "\n"
        "# the web pages\n"
        "web:\n"
        "  port: 8080\n"
    )
    remove_subscriber(path, "a@example.org")
    remove_subscriber(path, "c@example.org")
    assert path.read_text(encoding="utf-8") == (
        "subscribers:\n  # one entry per person\n\n# the web pages\nweb:\n  port: 8080\n"
    )
    assert load_config(path).subscribers == []


def test_adding_a_listed_address_in_another_case_fails_and_changes_nothing(config: Path) -> None:
    """An address already there, whatever its case, is refused at the line of the existing entry."""
    text = config.read_text(encoding="utf-8")
    line = text.splitlines().index("  - email: marie.dupont@example.org") + 1
    error = refused(config, add_subscriber, "Marie.DUPONT@example.org ", name="Marie")
    [problem] = error.problems()
    assert problem.line == line
    assert "Marie.DUPONT@example.org is already listed" in problem.message


def test_removing_an_unknown_address_fails_and_changes_nothing(config: Path) -> None:
    """Removing an address that is not listed names it and writes nothing."""
    error = refused(config, remove_subscriber, "personne@example.org")
    assert "subscriber personne@example.org is not listed" in str(error)


def test_an_invalid_frequency_fails_validation_and_changes_nothing(config: Path) -> None:
    """The edited text goes through the config validation; a bad frequency writes nothing."""
    error = refused(config, add_subscriber, "c@example.org", frequency="hourly")
    assert any("frequency" in p.message and "'hourly'" in p.message for p in error.problems())
    assert error.hint is not None and "was not changed" in error.hint
    refused(config, add_subscriber, "not an address")


@pytest.mark.parametrize(
    ("ending", "kept"),
    [
        ("", ""),
        ("subscribers:\n", "subscribers:\n"),
        ("subscribers: []   # none yet\n", "subscribers:      # none yet\n"),
        ("subscribers: ~\n", "subscribers:\n"),
    ],
)
def test_add_creates_the_list_when_there_is_none(config: Path, ending: str, kept: str) -> None:
    """Without `subscribers:`, or with it empty, the list is made in the shipped style."""
    shipped = config.read_text(encoding="utf-8")
    rest = shipped[: shipped.index("subscribers:\n")]
    config.write_text(rest + ending, encoding="utf-8")
    add_subscriber(config, "d@example.org", territoires=["Roubaix"])

    text = config.read_text(encoding="utf-8")
    assert text == rest + (kept or "subscribers:\n") + (
        "  - email: d@example.org\n    frequency: weekly\n    territoires: [Roubaix]\n"
    )
    [subscriber] = load_config(config).subscribers
    assert subscriber.email == "d@example.org" and subscriber.territoires == ["Roubaix"]


def test_add_to_a_file_without_subscribers_leaves_a_blank_line_before_the_new_section(tmp_path: Path) -> None:
    """A new section is appended after the others, separated by a blank line, even without a final newline."""
    path = tmp_path / "config.yaml"
    path.write_text("site:\n    title: IREV", encoding="utf-8")
    add_subscriber(path, "e@example.org")
    assert path.read_text(encoding="utf-8") == (
        "site:\n    title: IREV\n\nsubscribers:\n    - email: e@example.org\n      frequency: weekly\n"
    )


def test_an_empty_list_at_the_top_is_filled_in_place(tmp_path: Path) -> None:
    """`subscribers: []` before the other sections gets its entry there, indented like them."""
    path = tmp_path / "config.yaml"
    path.write_text("subscribers: []\nsite:\n   title: IREV\n", encoding="utf-8")
    add_subscriber(path, "p@example.org")
    assert path.read_text(encoding="utf-8") == (
        "subscribers:\n   - email: p@example.org\n     frequency: weekly\nsite:\n   title: IREV\n"
    )


def test_the_file_mode_is_kept(config: Path) -> None:
    """The file is replaced by a new one, but keeps its permission bits."""
    config.chmod(0o640)
    add_subscriber(config, "f@example.org")
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    config.chmod(0o604)
    remove_subscriber(config, "f@example.org")
    assert stat.S_IMODE(config.stat().st_mode) == 0o604
    assert sorted(os.listdir(config.parent)) == ["config.yaml"]


def test_the_layout_of_the_existing_list_is_followed(tmp_path: Path) -> None:
    """Entries at the key's column and separated by blank lines get a new one the same way."""
    path = tmp_path / "config.yaml"
    head = "subscribers:\n- email: a@example.org\n  frequency: daily\n\n- email: b@example.org\n  name: B\n"
    tail = "\nweb:\n  port: 8080\n"
    path.write_text(head + tail, encoding="utf-8")
    add_subscriber(path, "g@example.org", name="G")
    new = "\n- email: g@example.org\n  name: G\n  frequency: weekly\n"
    assert path.read_text(encoding="utf-8") == head + new + tail
    remove_subscriber(path, "b@example.org")
    assert path.read_text(encoding="utf-8") == (
        "subscribers:\n- email: a@example.org\n  frequency: daily\n" + new + tail
    )
    remove_subscriber(path, "a@example.org")
    assert path.read_text(encoding="utf-8") == "subscribers:" + new + tail


def test_line_endings_and_byte_order_mark_are_kept(config: Path) -> None:
    """A file saved with CRLF line endings and a BOM keeps both; the new lines use CRLF too."""
    shipped = config.read_bytes()
    config.write_bytes(b"\xef\xbb\xbf" + shipped.replace(b"\n", b"\r\n"))
    add_subscriber(config, "h@example.org", types=["Événement"])
    data = config.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf" + shipped[:20].replace(b"\n", b"\r\n"))
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert data.endswith(
        b"  - email: h@example.org\r\n    frequency: weekly\r\n    types: [\xc3\x89v\xc3\xa9nement]\r\n"
    )
    remove_subscriber(config, "h@example.org")
    assert config.read_bytes() == b"\xef\xbb\xbf" + shipped.replace(b"\n", b"\r\n")


def test_names_and_terms_that_need_quotes_get_them(config: Path) -> None:
    """Values holding ':', '#' or ',' are quoted by the YAML writer and read back unchanged."""
    add_subscriber(config, "i@example.org", name="Mairie: service #2", thematiques=["Santé, social"])
    subscriber = load_config(config).subscribers[-1]
    assert subscriber.name == "Mairie: service #2"
    assert subscriber.thematiques == ["Santé, social"]


def test_an_address_listed_twice_is_removed_everywhere(tmp_path: Path) -> None:
    """Removing an address listed twice (an invalid file) removes both entries and makes it valid."""
    path = tmp_path / "config.yaml"
    path.write_text(
        "subscribers:\n  - email: j@example.org\n  - email: k@example.org\n  - email: J@example.org\n",
        encoding="utf-8",
    )
    remove_subscriber(path, "j@example.org")
    assert path.read_text(encoding="utf-8") == "subscribers:\n  - email: k@example.org\n"


def test_a_flow_style_list_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    """A list written on one line cannot be edited in place; the message says how to write it."""
    path = tmp_path / "config.yaml"
    path.write_text("site:\n  title: IREV\nsubscribers: [{email: l@example.org}]\n", encoding="utf-8")
    error = refused(path, add_subscriber, "m@example.org")
    assert error.line == 3 and "- email:" in error.message
    refused(path, remove_subscriber, "l@example.org")


def test_bad_yaml_and_a_missing_file_are_reported_as_config_errors(tmp_path: Path) -> None:
    """A file that is not YAML, or is not there, gives a ConfigError naming it."""
    path = tmp_path / "config.yaml"
    path.write_text("site:\n  title: [IREV\n", encoding="utf-8")
    assert "not valid YAML" in str(refused(path, add_subscriber, "n@example.org"))
    with pytest.raises(ConfigError, match="no such file"):
        remove_subscriber(tmp_path / "absent.yaml", "n@example.org")


def test_a_file_changed_during_the_edit_is_not_overwritten(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If someone saves the file between reading and replacing, their version wins and the edit fails."""

    def meanwhile(text: str, path: Path, *, environment: bool = True) -> object:
        config.write_text("# saved by someone else\n", encoding="utf-8")
        return parse_config(text, path, environment=environment)

    monkeypatch.setattr("syndicator.config.edit.parse_config", meanwhile)
    with pytest.raises(ConfigError, match="changed while"):
        add_subscriber(config, "o@example.org")
    assert config.read_text(encoding="utf-8") == "# saved by someone else\n"
    assert sorted(os.listdir(config.parent)) == ["config.yaml"]

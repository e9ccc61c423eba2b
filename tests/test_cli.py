"""The command line as a user runs it: output, messages and exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from syndicator.config.model import load_config
from syndicator.db.store import Store

from .conftest import Run
from .support import ITEMS, SEED, item_text


def test_parse_json_prints_one_object_per_item(run: Run) -> None:
    """`parse --json` prints a JSON line per file, in the design's shape."""
    files = sorted(str(p) for p in ITEMS.glob("*.txt"))[:3]
    result = run("parse", *files, "--json")
    assert result.code == 0 and result.err == ""
    lines = result.out.splitlines()
    assert len(lines) == 3
    first = json.loads(lines[0])
    assert first["file"] == files[0] and first["type"] == "Actu de l'IREV"


def test_parse_a_broken_file_among_good_ones(run: Run, tmp_path: Path) -> None:
    """A broken file prints one located line on stderr and nothing on stdout; others still print."""
    broken = tmp_path / "broken.txt"
    broken.write_text("Juste du texte.\n", encoding="utf-8")
    result = run("parse", str(SEED), str(broken), str(SEED), "--json")
    assert result.code == 1
    assert len(result.out.splitlines()) == 2
    [line] = result.err.splitlines()
    assert line.startswith(f"{broken}:1: no source URL, so this is not an item; expected a line like ")


def test_ingest_reports_counts_and_is_idempotent(run: Run, project: Path) -> None:
    """`ingest` stores the samples, then finds them unchanged."""
    count = len(list((project / "items").glob("*.txt")))
    first = run("ingest")
    assert (first.code, first.out) == (0, f"{count} new, 0 updated, 0 unchanged, 0 errors\n")
    with Store.open(load_config(project / "config.yaml").database_url) as store:
        assert store.count_items() == count
    second = run("ingest")
    assert second.out == f"0 new, 0 updated, {count} unchanged, 0 errors\n"


def test_ingest_with_a_broken_file_exits_1_but_stores_the_rest(run: Run, project: Path) -> None:
    """A broken file makes the exit code 1; every good file is stored."""
    (project / "items" / "zz-broken.txt").write_bytes(b"\xff\xfe\x00")
    result = run("ingest", "items")
    count = len(list((project / "items").glob("*.txt"))) - 1
    assert result.code == 1
    assert result.out == f"{count} new, 0 updated, 0 unchanged, 1 errors\n"
    assert result.err == "items/zz-broken.txt:1: binary file, not an item (it holds NUL bytes)\n"


def test_check_passes_on_the_shipped_project(run: Run, project: Path) -> None:
    """`check` on the shipped config and samples finds nothing."""
    result = run("check")
    assert result.code == 0, result.err
    assert result.out.startswith("config.yaml: ")
    assert "OK" in result.out


def test_check_reports_config_and_item_problems(run: Run, project: Path) -> None:
    """`check` exits 1 with file:line lines for a bad config, then for bad items."""
    config = project / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8").replace("max_items: 50", "max_items: beaucoup"))
    bad = run("check")
    assert bad.code == 1
    [line] = bad.err.splitlines()
    assert line.startswith("config.yaml:") and "feeds.max_items" in line and "beaucoup" in line

    config.write_text(config.read_text(encoding="utf-8").replace("max_items: beaucoup", "max_items: 50"))
    (project / "items" / "vide.txt").write_text("", encoding="utf-8")
    dated = project / "items" / "date.txt"
    dated.write_text(
        "Texte.\n\nDates: 31 février 2022\n\nURL de la source: <https://irev.fr/a/texte>\n", encoding="utf-8"
    )
    result = run("check")
    assert result.code == 1
    assert result.err.splitlines() == [
        "items/date.txt:3: warning: event date ignored: no such day: 31/2/2022",
        "items/vide.txt:1: empty file, not an item",
    ]


def test_run_once_ingests(run: Run, project: Path) -> None:
    """`run --once` runs the cycle: ingest, then feeds."""
    result = run("run", "--once")
    assert result.code == 0
    assert " new, 0 updated, 0 unchanged, 0 errors" in result.out
    assert (project / "feeds" / "all.atom").exists()


def test_usage_errors_exit_2(run: Run) -> None:
    """An unknown command or a missing argument is a usage error."""
    assert run("nonsense").code == 2
    assert run("parse").code == 2


@pytest.mark.sqlite_only  # mine.yaml's database is a SQLite file relative to it
def test_config_option_and_environment(
    run: Run, project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--config after the command, else $SYNDICATOR_CONFIG, names the file; a missing one exits 1."""
    missing = run("check", "--config", str(tmp_path / "absent.yaml"))
    assert missing.code == 1 and "absent.yaml: no such file" in missing.err
    assert "hint:" in missing.err
    monkeypatch.setenv("SYNDICATOR_CONFIG", str(tmp_path / "elsewhere.yaml"))
    assert "elsewhere.yaml: no such file" in run("check").err
    other = tmp_path / "other"
    other.mkdir()
    (other / "mine.yaml").write_text("items:\n  path: ../items\ndatabase: sqlite:///mine.db\n")
    assert run("ingest", "--config", str(other / "mine.yaml")).code == 0
    assert (other / "mine.db").exists(), "paths in the file are relative to the file"


def test_verbose_adds_the_traceback(run: Run, tmp_path: Path) -> None:
    """Errors are one line; --verbose adds the traceback."""
    quiet = run("ingest", "--config", str(tmp_path / "absent.yaml"))
    loud = run("ingest", "--config", str(tmp_path / "absent.yaml"), "--verbose")
    assert "Traceback" not in quiet.err and "Traceback" in loud.err


def test_the_console_script_runs_in_a_pipe(project: Path) -> None:
    """The installed `syndicator` entry point works as a subprocess, quiet in a pipe."""
    env = {k: v for k, v in os.environ.items() if k != "SYNDICATOR_CONFIG"}
    done = subprocess.run(
        [sys.executable, "-m", "syndicator", "run", "--once"],
        cwd=project, capture_output=True, text=True, check=False, env=env, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert done.stdout.splitlines()[0].endswith(" new, 0 updated, 0 unchanged, 0 errors")
    assert (
        done.stdout.splitlines()[1].startswith("feeds: ")
        and " written, 0 unchanged, 0 removed" in done.stdout
    )


def test_check_reports_a_broken_template_with_its_line(run: Run, project: Path) -> None:
    """An admin's template with a syntax error is reported as file:line."""
    (project / "templates").mkdir()
    (project / "templates" / "feeds_index.html").write_text("<p>\n{% for x in %}\n", encoding="utf-8")
    result = run("check")
    assert result.code == 1
    [line] = result.err.splitlines()
    assert line.startswith("templates/feeds_index.html:2: template error: ")


def test_run_once_on_the_shipped_config_writes_digests_to_the_outbox(run: Run, project: Path) -> None:
    """The quick start: example subscribers get .eml digests, and a second run sends nothing more."""
    first = run("run", "--once")
    assert first.code == 0, first.err
    assert "digests (monthly): sent 2" in first.out
    emails = sorted((project / "outbox").glob("*.eml"))
    assert len(emails) >= 2
    second = run("run", "--once")
    assert second.code == 0
    assert sorted((project / "outbox").glob("*.eml")) == emails


def test_digest_preview_writes_three_files_and_records_nothing(run: Run, project: Path) -> None:
    """preview writes .html, .txt and .eml for one subscriber; a later send still sends it."""
    run("ingest")
    result = run("digest", "preview", "claire.martin@example.org", "--out", "preview")
    assert result.code == 0, result.err
    files = sorted(p.name for p in (project / "preview").iterdir())
    assert files == [f"digest-claire-martin-example-org.{ext}" for ext in ("eml", "html", "txt")]
    text = (project / "preview" / files[2]).read_text(encoding="utf-8")
    assert text.startswith("Bonjour Claire Martin,")
    sent = run("digest", "send", "--frequency", "monthly")
    assert sent.out.strip() == "sent 2, empty 0, failed 0, suppressed 0"


def test_digest_send_dry_run_and_unknown_subscriber(run: Run, project: Path) -> None:
    """--dry-run counts without writing; an unknown address is a located error."""
    run("ingest")
    dry = run("digest", "send", "--dry-run")
    assert dry.code == 0 and dry.out.startswith("dry run: sent ")
    assert not (project / "outbox").exists()
    missing = run("digest", "preview", "nobody@example.org")
    assert missing.code == 1
    assert missing.err.startswith("config.yaml: no subscriber nobody@example.org in the config")


def test_explain_from_the_command_line(run: Run, project: Path) -> None:
    """explain prints each rule and a verdict."""
    run("ingest")
    url = (
        "https://www.irev.fr/actualites-0/wattrelos-lance-son-premier-budget-participatif-dans-les-quartiers"
    )
    result = run("explain", "claire.martin@example.org", url)
    assert result.code == 0
    assert "stops:  types" in result.out
    assert "passes: territoires: the item's 'Métropole Européenne de Lille' is above 'Roubaix'" in result.out
    assert result.out.rstrip().endswith("=> does not go to this subscriber")


def test_subscribers_add_list_remove(run: Run, project: Path) -> None:
    """add and remove edit config.yaml keeping comments; list shows the subscriber."""
    before = (project / "config.yaml").read_text(encoding="utf-8")
    added = run("subscribers", "add", "nouveau@example.org", "--name", "Nouveau", "--frequency", "daily",
                "--thematique", "Santé", "--territoire", "Lille")  # fmt: skip
    assert added.code == 0, added.err
    listing = run("subscribers", "list")
    line = next(row for row in listing.out.splitlines() if row.startswith("nouveau@example.org"))
    assert "daily" in line and "thématiques: Santé; territoires: Lille" in line and "never" in line
    assert run("subscribers", "add", "NOUVEAU@example.org").code == 1
    assert run("subscribers", "remove", "nouveau@example.org").code == 0
    assert (project / "config.yaml").read_text(encoding="utf-8") == before


def test_check_reports_unknown_interests_with_a_suggestion(run: Run, project: Path) -> None:
    """A misspelt thématique or territoire in a subscription is located, with a 'did you mean'."""
    config = project / "config.yaml"
    text = config.read_text(encoding="utf-8").replace("thematiques: [Éducation]", "thematiques: [Educaton]")
    config.write_text(text.replace("territoires: [Roubaix]", "territoires: [Roubiax]"), encoding="utf-8")
    result = run("check")
    assert result.code == 1
    lines = result.err.splitlines()
    assert any(
        line.startswith("config.yaml:") and "unknown thématique 'Educaton'; did you mean 'Éducation'" in line
        for line in lines
    ), lines
    assert any("unknown territoire 'Roubiax'; did you mean 'Roubaix'" in line for line in lines), lines


def test_check_reports_ambiguous_territoires_in_config_and_items(run: Run, project: Path) -> None:
    """`Saint-Aubin` names three communes: check says so for a subscription (with the spellings
    that pick one) and for an item's label (asking for an alias); `Saint-Aubin (59)` passes."""
    config = project / "config.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("territoires: [Roubaix]", "territoires: [Saint-Aubin]"), encoding="utf-8")
    item = project / "items" / "zz_saint_aubin.txt"
    item.write_text(
        item_text(
            "https://www.irev.fr/actualites-0/fete-de-quartier-a-saint-aubin",
            fields="Territoires : [Saint-Aubin](#) [3]\n\n",
        ),
        encoding="utf-8",
    )
    result = run("check")
    assert result.code == 1
    lines = result.err.splitlines()
    assert any(
        line.startswith("config.yaml:")
        and "territoire 'Saint-Aubin' is ambiguous: write 'Saint-Aubin (02)' or 'Saint-Aubin (59)'" in line
        for line in lines
    ), lines
    assert any(
        line.startswith(f"items/{item.name}: warning: territoire 'Saint-Aubin' is ambiguous")
        for line in lines
    ), lines
    config.write_text(
        text.replace("territoires: [Roubaix]", "territoires: [Saint-Aubin (59)]"), encoding="utf-8"
    )
    assert not any(
        line.startswith("config.yaml:") and "ambiguous" in line for line in run("check").err.splitlines()
    )


def test_status_shows_jobs_and_deliveries(run: Run, project: Path) -> None:
    """status counts items, terms and subscribers, names each job's runs and the ledger's states."""
    run("run", "--once")
    result = run("status")
    assert result.code == 0
    lines = result.out.splitlines()
    assert lines[0].startswith("items: 27, terms: ") and lines[0].endswith("subscribers: 5")
    assert any(line.startswith("job daily: last run ") and "; next " in line for line in lines)
    assert lines[-1].startswith("deliveries: 0 pending, 0 failed, ") and lines[-1].endswith(
        "0 suppressed addresses"
    )


def test_a_reader_that_stops_early_gets_no_traceback(project: Path) -> None:
    """`syndicator status | head -1` where head has gone before status writes: status ends
    quietly (exit 141, as a shell shows a command stopped by SIGPIPE), with no traceback."""
    command = [sys.executable, "-m", "syndicator", "status"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=project)
    assert process.stdout is not None
    process.stdout.close()  # the reader is gone before the first line is written
    _, err = process.communicate(timeout=60)
    assert process.returncode == 141, err
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err


@pytest.mark.parametrize(
    "args",
    [
        ("subscribers", "forget", ""),
        ("subscribers", "export", "  "),
        ("subscribers", "add", ""),
        ("subscribers", "remove", " "),
        ("explain", "", "https://example.org/"),
        ("digest", "preview", ""),
    ],
)
def test_a_blank_address_is_a_usage_error_that_says_so(
    run: Run, project: Path, args: tuple[str, ...]
) -> None:
    """An empty EMAIL (a shell variable left unset) is refused before anything is read or
    changed, with a message that says no address was given, not that it is unknown."""
    before = (project / "config.yaml").read_bytes()
    result = run(*args, "--config", str(project / "config.yaml"))
    assert result.code == 2
    assert "no address given" in result.err
    assert (project / "config.yaml").read_bytes() == before

"""Digest emails as a spam filter sees them: SpamAssassin's local rules must find nothing to hold.

Runs `spamassassin -L -t` (local tests only: no DNS, no network) on the digests the project
builds from the sample items and config.yaml. Skipped when SpamAssassin is not installed
(Debian: `apt-get install spamassassin`).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from syndicator.config.model import parse_config
from syndicator.db.store import Store
from syndicator.digests.run import DigestRun
from syndicator.ingest.reading import ingest

from .databases import use_database
from .support import ITEMS, ROOT

MAX_SCORE = 1.0  # SpamAssassin holds mail at 5.0; a digest should not come anywhere near
NOW = datetime(2026, 12, 1, 6, 30, tzinfo=UTC)  # the monthly run of 1 December, Paris time


def spamassassin_binary() -> str:
    """The spamassassin command, or a skip saying how to get it."""
    found = shutil.which("spamassassin") or (
        "/usr/bin/spamassassin" if Path("/usr/bin/spamassassin").exists() else None
    )
    if found is None:
        pytest.skip("spamassassin is not installed (Debian: apt-get install spamassassin)")
    return found


def digest_messages(root: Path) -> dict[str, bytes]:
    """Each subscriber's next digest as bytes, built as `digest send` builds them."""
    shutil.copytree(ITEMS, root / "items")
    use_database(Path(shutil.copy(ROOT / "config.yaml", root / "config.yaml")))
    config = parse_config((root / "config.yaml").read_text(encoding="utf-8"), root / "config.yaml")
    messages: dict[str, bytes] = {}
    with Store.open(config.database_url) as store:
        assert ingest(store, [config.items_path], now=NOW - timedelta(hours=1)).errors == []
        digests = DigestRun(store, config, now=NOW)
        for subscriber in digests.subscribers():
            digest = digests.next_digest(subscriber)
            if digest is not None:
                _, data = digests.message(digest, digests.render(digest))
                messages[subscriber.email] = data
    return messages


def spam_check(binary: str, message: bytes, home: Path) -> tuple[float, dict[str, float], str]:
    """The score, the rules hit with their points, and the output of `spamassassin -L -t`.

    HOME points at an empty folder and Bayes is off, so neither the developer's own settings
    nor what earlier runs learned change the score, and nothing is written outside tmp_path."""
    home.mkdir(exist_ok=True)
    result = subprocess.run(
        [binary, "-L", "-t", "-x", "--cf=use_bayes 0", "--cf=bayes_auto_learn 0"],
        input=message,
        capture_output=True,
        timeout=300,
        env={**os.environ, "HOME": str(home)},
        check=False,
    )
    output = result.stdout.decode("utf-8", "replace")
    head = output.split("\n\n", 1)[0]
    status = re.search(r"^X-Spam-Status: (.*(?:\n[ \t].*)*)", head, re.MULTILINE)
    assert status is not None, (
        f"no X-Spam-Status header from spamassassin (exit {result.returncode}):\n"
        f"{result.stderr.decode('utf-8', 'replace')}\n{output[:2000]}"
    )
    text = re.sub(r",\s+", ",", " ".join(status.group(1).split()))
    score = re.search(r"\bscore=(-?\d+(?:\.\d+)?)", text)
    tests = re.search(r"\btests=(\S*)", text)
    assert score is not None, text
    names = [r for r in tests.group(1).split(",") if r and r != "none"] if tests else []
    points = {m[2]: float(m[1]) for m in re.finditer(r"^ *(-?\d+\.\d+) +([A-Z0-9_]+) ", output, re.MULTILINE)}
    return float(score.group(1)), {name: points.get(name, 0.0) for name in names}, output


def report_table(output: str) -> str:
    """The 'Content analysis details' table SpamAssassin appends: each rule with its points."""
    start = output.find("Content analysis details")
    if start == -1:
        return "(no report)"
    lines = output[start:].splitlines()
    table = [lines[0]]
    for line in lines[1:]:
        if not line.strip() and len(table) > 3:  # the blank line that ends the table
            break
        table.append(line)
    return "\n".join(table)


def test_digests_are_not_spam(tmp_path: Path) -> None:
    """The largest and the smallest sample digest score under 1.0 on SpamAssassin's local rules.

    The rules that add points must stay under 1.0 on their own too: the bonus the list headers
    earn (MAILING_LIST_MULTI, -1.0) must not hide a problem in the content."""
    binary = spamassassin_binary()
    messages = digest_messages(tmp_path / "project")
    assert messages, "the sample config and items give no digest at all"
    sizes = sorted(messages, key=lambda email: (len(messages[email]), email))
    failures: list[str] = []
    for recipient in dict.fromkeys([sizes[-1], sizes[0]]):
        score, rules, output = spam_check(binary, messages[recipient], tmp_path / "home")
        hits = ", ".join(f"{name} ({points:+.3f})" for name, points in rules.items()) or "none"
        print(f"{recipient}: score {score} ({len(messages[recipient])} bytes); rules hit: {hits}")
        print(report_table(output))
        added = sum(points for points in rules.values() if points > 0)
        if score >= MAX_SCORE or added >= MAX_SCORE:
            failures.append(f"{recipient}: score {score}, positive rules {added:.3f}; rules hit: {hits}")
    assert not failures, "\n".join(failures)

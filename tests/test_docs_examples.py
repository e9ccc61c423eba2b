"""Every command example of the README and docs/ runs as written, and shows what the page says.

An example is a fenced ```console block: `$ syndicator ...` lines, each followed by the lines it
prints. A command that must fail ends with a shell comment `# exits N`. In an expected line,
`...` stands for any text, and a line of `...` alone for any lines; runs of spaces count as one
(tables are aligned). The expected lines must appear in the output in that order. Blocks fenced
otherwise (```sh for a mail server, a database server or a daemon) are not run.

Each page runs in a folder of its own, laid out as the quick start's (config.yaml, items/;
templates from the package), its examples in the page's order, through the installed
`syndicator` command as a user types it.
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from .databases import use_database
from .support import ITEMS, ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SYNDICATOR = Path(sys.executable).parent / "syndicator"
_FENCE = re.compile(r"^```console\n(.*?)^```$", re.M | re.S)
_EXITS = re.compile(r"\s+#\s*exits\s+(\d+)$")


@dataclass(frozen=True)
class Example:
    """One `$ syndicator ...` line of a page, with its exit code and the lines it shows."""

    page: str
    line: int
    command: str
    code: int
    shown: tuple[str, ...]


def examples(page: Path) -> list[Example]:
    """The console examples of a page, in its order."""
    text = page.read_text(encoding="utf-8")
    found: list[Example] = []
    for block in _FENCE.finditer(text):
        first = text.count("\n", 0, block.start(1)) + 1
        for offset, raw in enumerate(block.group(1).splitlines()):
            if raw.startswith("$ "):
                command, code = raw[2:], 0
                if exits := _EXITS.search(command):
                    command, code = command[: exits.start()], int(exits.group(1))
                found.append(Example(page.name, first + offset, command, code, ()))
            else:
                assert found and found[-1].line >= first, (
                    f"{page.name}:{first + offset}: output before a `$ ` line"
                )
                found[-1] = replace(found[-1], shown=(*found[-1].shown, raw))
    return found


def _pattern(shown: str) -> re.Pattern[str]:
    parts = (re.escape(" ".join(part.split())) for part in shown.split("..."))
    return re.compile(".*".join(parts))


def matches(shown: tuple[str, ...], output: str) -> str | None:
    """None when the shown lines appear in the output, in order; else the first one missing."""
    lines = [" ".join(line.split()) for line in output.splitlines()]
    position = 0
    for expected in shown:
        if expected.strip() == "...":
            continue
        pattern = _pattern(expected)
        while position < len(lines) and not pattern.fullmatch(lines[position]):
            position += 1
        if position == len(lines):
            return expected
        position += 1
    return None


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    use_database(Path(shutil.copy(ROOT / "config.yaml", folder / "config.yaml")))
    shutil.copytree(ITEMS, folder / "items")
    return folder


def _environment() -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("SYNDICATOR_", "LC_", "LANG"))}
    # Unbuffered, so that what goes to stdout and stderr interleaves as on a terminal.
    return {**keep, "LANG": "C.UTF-8", "PYTHONUNBUFFERED": "1"}


@pytest.mark.parametrize("page", [p for p in PAGES if examples(p)], ids=lambda p: p.name)
def test_every_console_example_of_the_page_runs_as_shown(page: Path, tmp_path: Path) -> None:
    """Each `$ syndicator ...` example of the page, run in order in a fresh copy of the quick
    start's folder, exits with the code it states and prints the lines the page shows."""
    folder = _folder(tmp_path)
    for example in examples(page):
        words = shlex.split(example.command)
        where = f"{example.page}:{example.line}: `{example.command}`"
        assert words[0] == "syndicator", (
            f"{where}: only `syndicator` runs in a console block; fence others as sh"
        )
        done = subprocess.run(
            [str(SYNDICATOR), *words[1:]],
            cwd=folder,
            env=_environment(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=120,
            check=False,
        )
        output = done.stdout
        assert done.returncode == example.code, f"{where}: exit {done.returncode}\n{output}"
        missing = matches(example.shown, output)
        assert missing is None, f"{where}: does not show {missing!r}; it printed:\n{output}"


def test_the_admin_guide_runs_every_command_but_the_long_running_ones() -> None:
    """The admin guide shows every subcommand in a console example the suite runs, except
    `run` (the daemon) and `serve`, which run until stopped and are shown in sh blocks."""
    from syndicator.cli.main import _parser

    parser = _parser()
    [commands] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    ran = {shlex.split(e.command)[1] for e in examples(ROOT / "docs" / "admin-guide.md")}
    assert set(commands.choices) - ran == {"serve"}  # `run --once` counts for run


def test_a_wrong_example_is_caught() -> None:
    """The matcher the examples rely on tells a shown line from a missing one, in order, with
    `...` eliding text and spaces folded."""
    output = "address   name\nana@x.org   Ana   active\nfeeds: 3 written\n"
    assert matches(("address name", "ana@x.org ... active"), output) is None
    assert matches(("...", "feeds: ... written"), output) is None
    assert matches(("feeds: 3 written", "address name"), output) == "address name"
    assert matches(("bob@x.org ... active",), output) == "bob@x.org ... active"

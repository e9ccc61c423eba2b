"""Each command imports only what it uses: `--help` no database, config or template library, and
`status` no mail, bounce, web or daemon stack. The figures are bench/startup.py's; this holds the rule."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from .support import ROOT

PROBE = """
import json, sys
from syndicator.cli.main import main
try:
    code = main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
print(json.dumps(sorted(m for m in sys.modules if "." not in m)), file=sys.stderr)
"""


def loaded_by(args: list[str], cwd: Path) -> set[str]:
    """The top-level modules the command line has loaded once `args` ran."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def test_help_loads_no_database_config_or_template_library(tmp_path: Path) -> None:
    """`syndicator --help` parses arguments and nothing else: it stays as quick as rss2email's."""
    loaded = loaded_by(["--help"], tmp_path)
    assert "argparse" in loaded
    assert loaded.isdisjoint({"sqlalchemy", "pydantic", "jinja2", "babel", "ruamel", "email_validator"})


@pytest.mark.sqlite_only
def test_status_loads_no_mail_bounce_web_or_daemon_stack(tmp_path: Path) -> None:
    """`syndicator status` reads the config and the store; sending, bounces, the web app and the
    scheduler's daemon stay unloaded."""
    for name in ("config.yaml", "items"):
        source = ROOT / name
        if source.is_dir():
            subprocess.run(["cp", "-r", str(source), str(tmp_path / name)], check=True)
        else:
            (tmp_path / name).write_bytes(source.read_bytes())
    loaded = loaded_by(["status"], tmp_path)
    assert "sqlalchemy" in loaded
    unwanted = {
        "aiosmtplib",
        "flufl",
        "imapclient",
        "starlette",
        "uvicorn",
        "dkim",
        "css_inline",
        "watchfiles",
    }
    assert loaded.isdisjoint(unwanted), loaded & unwanted


@pytest.mark.sqlite_only
def test_digest_send_loads_no_scheduler_markdown_dkim_or_terminal_library(tmp_path: Path) -> None:
    """`syndicator digest send` in a pipe, with no schedule to check and no DKIM key: the
    scheduler, the Markdown parser (item files are not read), dkimpy and rich stay unloaded
    (bench/rss2email.py at 0 ms counts the start-up)."""
    (tmp_path / "config.yaml").write_text(
        "email: {transport: outbox}\nsubscribers:\n  - email: a@example.org\n    frequency: weekly\n",
        encoding="utf-8",
    )
    (tmp_path / "items").mkdir()
    loaded = loaded_by(["digest", "send"], tmp_path)
    assert {"sqlalchemy", "jinja2", "css_inline"} <= loaded
    unwanted = {"apscheduler", "markdown_it", "dkim", "dns", "rich"}
    assert loaded.isdisjoint(unwanted), loaded & unwanted

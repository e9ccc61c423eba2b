"""Second look at the hardening: the same attacks and mistakes by other paths than those first
fixed (a secret of raw bytes, odd addresses, a config emptied while the daemon runs, ...)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .conftest import Run

MARIE = "marie.dupont@example.org"


@pytest.fixture(autouse=True)
def no_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    """No secret from the developer's environment leaks into these tests."""
    for name in list(os.environ):
        if name.startswith(("SYNDICATOR_SECRET", "SYNDICATOR_OLD_SECRET")):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("variable", ["SYNDICATOR_SECRET", "SYNDICATOR_OLD_SECRET"])
def test_a_secret_of_raw_bytes_is_refused_with_a_hint_not_a_traceback(
    run: Run, project: Path, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """A secret made of raw random bytes (`head -c 32 /dev/urandom` in an environment file) is
    not UTF-8: `check` and the commands that seal links name the variable and say how to make
    one, instead of dying with a UnicodeEncodeError."""
    raw = os.fsdecode(b"\xff\xfe\x80" + b"k" * 40)  # as os.environ holds such bytes
    monkeypatch.setenv("SYNDICATOR_SECRET", "un secret de texte assez long pour la lettre")
    monkeypatch.setenv(variable, raw)
    checked = run("check")
    assert checked.code == 1
    assert f"${variable}: the secret holds bytes that are not UTF-8 text" in checked.err
    assert "hint: make a secret of text with: python3 -c" in checked.err
    assert "Traceback" not in checked.err
    preview = run("digest", "preview", MARIE, "--out", str(project / "preview"))
    assert preview.code == 1 and preview.err.startswith(f"${variable}: the secret holds bytes")

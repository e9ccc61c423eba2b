"""Secrets: `$SYNDICATOR_SECRET` is one key, rotation is explicit, short secrets are refused, and
the files holding secrets or links (database, outbox) are private whatever the umask."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from syndicator.config.model import load_config
from syndicator.db.store import Store
from syndicator.db.tokens import AddressTokens, secret_keys
from syndicator.web.app import create_app

from .conftest import Run
from .databases import database_for, on_postgresql
from .support import ROOT
from .web_support import TestClient

PASSPHRASE = "my long company passphrase, 2026 zebra"  # 38 bytes, spaces and a comma
FORMER = "l'ancien secret de la lettre, avant la rotation"
MARIE = "marie.dupont@example.org"


pytestmark = pytest.mark.usefixtures("no_secrets")  # tests/conftest.py


@pytest.fixture
def umask() -> Iterator[None]:
    """The usual umask (0022, files 0644) for the test, the previous one restored after."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def unsubscribe_token(eml: Path) -> str:
    message = message_from_bytes(eml.read_bytes(), policy=policy.default)
    found = re.search(r"/unsubscribe/([A-Za-z0-9_.-]+)>", str(message["List-Unsubscribe"]))
    assert found is not None
    return found.group(1)


# --- one secret, one key ------------------------------------------------------------------------


def test_a_passphrase_with_spaces_and_commas_seals_links_whole(
    run: Run, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The links in digests are sealed with the whole passphrase, not with its last word."""
    monkeypatch.setenv("SYNDICATOR_SECRET", PASSPHRASE)
    assert run("run", "--once").code == 0
    token = unsubscribe_token(sorted((project / "outbox").glob("*.eml"))[0])
    assert AddressTokens([PASSPHRASE], "unsubscribe").open(token) is not None
    assert AddressTokens(["zebra"], "unsubscribe").open(token) is None


def test_a_word_of_the_passphrase_opens_no_link(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A token sealed with one word of the passphrase (`my`) does not unsubscribe anyone; one
    sealed with the whole passphrase does."""
    monkeypatch.setenv("SYNDICATOR_SECRET", PASSPHRASE)
    config = load_config(project / "config.yaml")
    with TestClient(create_app(config)) as client:
        for word in ("my", "zebra", "2026"):
            forged = AddressTokens([word], "unsubscribe").seal(MARIE)
            assert client.get(f"/unsubscribe/{forged}").status_code == 400
        genuine = AddressTokens([PASSPHRASE], "unsubscribe").seal(MARIE)
        assert client.get(f"/unsubscribe/{genuine}").status_code == 200


def test_former_secrets_open_links_but_never_seal_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`SYNDICATOR_OLD_SECRET` and `SYNDICATOR_OLD_SECRET_<name>` each hold one former secret,
    spaces included: their links still open, and new links are sealed with the current secret."""
    older = "un secret plus ancien encore, de l'année 2024"
    monkeypatch.setenv("SYNDICATOR_SECRET", PASSPHRASE)
    monkeypatch.setenv("SYNDICATOR_OLD_SECRET", FORMER)
    monkeypatch.setenv("SYNDICATOR_OLD_SECRET_2024", older)
    with Store.open(database_for(tmp_path, "s.db")) as store:
        tokens = AddressTokens(secret_keys(store), "unsubscribe")
    assert tokens.seal(MARIE) == AddressTokens([PASSPHRASE], "unsubscribe").seal(MARIE)
    for secret in (FORMER, older):
        assert tokens.open(AddressTokens([secret], "unsubscribe").seal(MARIE)) == MARIE
    assert tokens.open(AddressTokens(["ancien"], "unsubscribe").seal(MARIE)) is None


def test_a_short_secret_is_refused_with_a_hint(
    run: Run, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A secret under 32 bytes stops `check`, `run` at its start and the commands that make
    links, naming the variable, with a hint on how to make a good one."""
    monkeypatch.setenv("SYNDICATOR_SECRET", "court, mais secret")
    checked = run("check")
    assert checked.code == 1
    assert "$SYNDICATOR_SECRET: the secret is 18 bytes long, shorter than the 32 needed" in checked.err
    assert "hint: make one with: python3 -c 'import secrets; print(secrets.token_urlsafe(32))'" in checked.err
    service = run("run", "--once")  # refused at start, even when no digest is due
    assert service.code == 1 and "$SYNDICATOR_SECRET: the secret is 18 bytes long" in service.err
    assert not (project / "syndicator.db").exists()
    preview = run("digest", "preview", MARIE, "--out", str(project / "preview"))
    assert preview.code == 1
    assert preview.err.startswith("$SYNDICATOR_SECRET: the secret is 18 bytes long")
    assert not (project / "preview").exists()


def test_serve_refuses_a_short_secret_at_start(project: Path) -> None:
    """`serve` stops at once on a short secret (exit 1, with the hint) instead of serving pages
    whose links would be sealed with it."""
    env = {**os.environ, "SYNDICATOR_SECRET": "court, mais secret"}
    command = [sys.executable, "-m", "syndicator", "serve", "--port", "0"]
    result = subprocess.run(
        command, cwd=project, env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 1
    assert result.stderr.startswith("$SYNDICATOR_SECRET: the secret is 18 bytes long")
    assert "hint: make one with:" in result.stderr


def test_a_short_former_secret_is_refused_too(
    run: Run, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A former secret under 32 bytes is refused like a current one: it could be guessed from
    an old link, and then forge new ones."""
    monkeypatch.setenv("SYNDICATOR_SECRET", PASSPHRASE)
    monkeypatch.setenv("SYNDICATOR_OLD_SECRET_1", "zebra")
    result = run("check")
    assert result.code == 1
    assert "$SYNDICATOR_OLD_SECRET_1: the secret is 5 bytes long" in result.err


def test_former_secrets_without_a_current_one_are_refused(
    run: Run, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A former secret with no `SYNDICATOR_SECRET` is a half-done rotation: refused, not ignored."""
    monkeypatch.setenv("SYNDICATOR_OLD_SECRET", FORMER)
    result = run("check")
    assert result.code == 1
    assert "$SYNDICATOR_OLD_SECRET: SYNDICATOR_OLD_SECRET is set but SYNDICATOR_SECRET is not" in result.err


def test_check_warns_about_a_list_of_secrets_of_the_first_releases(
    run: Run, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two long keys separated by a space were a rotation list before; now they are one secret,
    so `check` warns and tells how to write the rotation."""
    monkeypatch.setenv("SYNDICATOR_SECRET", f"{'a' * 43} {'b' * 43}")
    result = run("check")
    assert result.code == 1
    assert (
        "$SYNDICATOR_SECRET: warning: holds spaces or commas between parts as long as secrets" in result.err
    )
    assert "hint: keep the newest part in SYNDICATOR_SECRET and each older one in" in result.err


# --- private files --------------------------------------------------------------------------------


@pytest.mark.sqlite_only
def test_a_new_database_and_its_wal_files_are_private(tmp_path: Path, umask: None) -> None:
    """With the usual umask, the SQLite file (it holds the generated secret and every address)
    and its -wal and -shm files are readable by their owner only."""
    database = tmp_path / "syndicator.db"
    with Store.open(f"sqlite:///{database}") as store:
        assert secret_keys(store)  # makes and keeps the secret
        with store.engine.connect():  # a connection open keeps -wal and -shm on disk
            files = [database, tmp_path / "syndicator.db-wal", tmp_path / "syndicator.db-shm"]
            assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}


def test_outbox_messages_and_their_folder_are_private(run: Run, project: Path, umask: None) -> None:
    """The outbox folder is made 0700 and each .eml (its links unsubscribe the reader) 0600."""
    assert run("run", "--once").code == 0
    outbox = project / "outbox"
    messages = sorted(outbox.glob("*.eml"))
    assert messages
    assert mode(outbox) == 0o700
    assert {mode(m) for m in messages} == {0o600}
    if not on_postgresql():
        assert mode(project / "syndicator.db") == 0o600


def test_feeds_stay_public_under_the_daemons_umask(run: Run, project: Path) -> None:
    """Under systemd's `UMask=0077` the feeds' folders and files are still readable by everyone:
    a web server publishes them."""
    previous = os.umask(0o077)
    try:
        assert run("run", "--once").code == 0
    finally:
        os.umask(previous)
    feeds = project / "feeds"
    assert {mode(d) for d in [feeds, *(p for p in feeds.rglob("*") if p.is_dir())]} == {0o755}
    assert {mode(f) for f in feeds.rglob("*") if f.is_file()} == {0o644}
    assert mode(project / "outbox") == 0o700


def test_the_systemd_unit_makes_files_private() -> None:
    """The shipped unit sets `UMask=0077` in its [Service] section."""
    unit = (ROOT / "contrib" / "syndicator.service").read_text(encoding="utf-8")
    service = unit.split("[Service]", 1)[1].split("\n[", 1)[0]
    assert "\nUMask=0077\n" in service


@pytest.mark.sqlite_only  # a SQLite file's mode
def test_check_warns_about_a_database_or_dkim_key_others_can_read(run: Run, project: Path) -> None:
    """`check` warns, with the chmod to run, when the database or the DKIM private key may be read
    by the group or others; once made private, it is quiet."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (project / "dkim.pem").write_bytes(pem)
    config = project / "config.yaml"
    text = config.read_text(encoding="utf-8")
    assert "  # dkim: {key: dkim.pem, selector: lettre}" in text
    config.write_text(text.replace("  # dkim: {key:", "  dkim: {key:"), encoding="utf-8")
    assert run("ingest").code == 0
    database = project / "syndicator.db"
    os.chmod(database, 0o644)
    os.chmod(project / "dkim.pem", 0o640)
    result = run("check")
    assert result.code == 1
    assert (
        "dkim.pem: warning: the DKIM private key is open to other users (mode 0640); "
        "make it private: chmod 600 dkim.pem"  # relative to config.yaml's folder, here the current one
    ) in result.err
    assert f"{database}: warning: the database is open to other users (mode 0644)" in result.err
    os.chmod(database, 0o600)
    os.chmod(project / "dkim.pem", 0o600)
    quiet = run("check")
    assert (quiet.code, quiet.err) == (0, "")


def test_check_warns_about_a_misspelt_secret_variable(
    run: Run, project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`SYNDICATOR_OLD_SECRETS` (plural) is read by nothing: `check` says so and names the
    variables that are read, instead of leaving the former secret's links dead without a word."""
    monkeypatch.setenv("SYNDICATOR_SECRET", PASSPHRASE)
    monkeypatch.setenv("SYNDICATOR_OLD_SECRETS", FORMER)
    result = run("check")
    assert result.code == 1
    assert (
        "$SYNDICATOR_OLD_SECRETS: warning: syndicator reads no such variable; a former secret goes in "
        "SYNDICATOR_OLD_SECRET or SYNDICATOR_OLD_SECRET_<name>, the current one in SYNDICATOR_SECRET"
    ) in result.err

"""The bounce mailbox as an IMAP folder, from the CLI: `email.bounces.imap` in config.yaml, a real
Dovecot (tests/imap_server.py), real digests sent through a real SMTP server, then a real Postfix
DSN and a message that is no bounce put in the folder, and `syndicator bounces`."""

from __future__ import annotations

import shutil
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import Run
from .imap_server import PASSWORD_ENV, USER_ENV, Dovecot, dovecot
from .smtp_server import Handler, smtp_server
from .test_bounces import _bounce, _project, _send, _state

pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.usefixtures("no_secrets"),
]

NOT_A_BOUNCE = (
    b"From: someone@example.net\r\nTo: bounces@lettre.example.org\r\nSubject: Bonjour\r\n\r\nSalut.\r\n"
)


@pytest.fixture(scope="module")
def server() -> Iterator[Dovecot]:
    with dovecot() as running:
        yield running


def _imap(port: int, *, ca_file: str | None = "imap-ca.pem") -> str:
    trust = f"ca_file: {ca_file}, " if ca_file else ""
    return (
        "{address: bounces@lettre.example.org, imap: {host: 127.0.0.1, "
        f"port: {port}, tls: ssl, username_env: {USER_ENV}, password_env: {PASSWORD_ENV}, "
        f"{trust}timeout: 5}}}}"
    )


def test_the_bounces_command_reads_an_imap_folder_and_moves_what_it_read(
    run: Run, tmp_path: Path, server: Dovecot, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Postfix DSN for a digest's VERP address and a message that is no bounce, in the IMAP
    inbox: `bounces` suppresses that subscriber, moves the DSN to `processed` and the other to
    `unrecognised`, and leaves the inbox empty; `ca_file` is read relative to config.yaml."""
    account = server.account()
    for name, value in account.environment.items():
        monkeypatch.setenv(name, value)
    handler = Handler()
    with smtp_server(handler) as port:
        config = _project(tmp_path, port, bounces=_imap(server.ssl_port))
        shutil.copy(server.certificate, tmp_path / "imap-ca.pem")
        senders = _send(run, config, handler)
    account.append(_bounce("postfix-remote-550.eml", to="s2@example.org", sender=senders["s2@example.org"]))
    account.append(NOT_A_BOUNCE)
    monkeypatch.chdir(tmp_path.parent)  # not the config's folder: ca_file must be found anyway
    result = run("bounces", "--config", str(config))
    assert result.code == 0, result.err
    assert result.out.splitlines()[-1] == "1 hard, 0 soft, 0 complaints, 0 ignored, 1 unrecognised"
    assert "imap://127.0.0.1/INBOX/" in result.err  # the unrecognised one, named for a person
    assert "bounced (hard bounce, 5.1.1" in _state(run, config, "s2@example.org")
    assert _state(run, config, "s3@example.org").endswith("active")
    assert account.contents("INBOX") == []
    processed = [raw for raw, _ in account.contents("processed")]
    assert len(processed) == 1 and b"Diagnostic-Code: smtp; 550 5.1.1" in processed[0]
    assert [raw for raw, _ in account.contents("unrecognised")] == [NOT_A_BOUNCE]


def test_an_imap_server_that_cannot_be_reached_is_reported_and_check_names_what_is_missing(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A port nobody listens on: `bounces` exits 1 naming the server, nothing is suppressed.
    `check` warns about a login variable not set, and gives file:line for a misspelt key."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    monkeypatch.setenv(USER_ENV, "bounces")
    monkeypatch.setenv(PASSWORD_ENV, "secret")
    with smtp_server(Handler()) as port:
        config = _project(tmp_path, port, bounces=_imap(closed, ca_file=None))
    result = run("bounces", "--config", str(config))
    assert result.code == 1
    assert f"IMAP server 127.0.0.1:{closed}: connecting failed" in result.err
    assert "Traceback" not in result.err

    monkeypatch.delenv(PASSWORD_ENV)
    checked = run("check", "--config", str(config))
    assert f"email.bounces.imap: ${PASSWORD_ENV} is not set" in checked.out + checked.err

    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("host: 127.0.0.1, port:", "hots: 127.0.0.1, port:"), encoding="utf-8")
    line = next(n for n, row in enumerate(config.read_text().splitlines(), 1) if "hots:" in row)
    typo = run("check", "--config", str(config))
    assert typo.code == 1
    assert f"config.yaml:{line}:" in typo.err and "hots" in typo.err

"""Second look at the hardening: the same attacks and mistakes by other paths than those first
fixed (a secret of raw bytes, odd addresses, a config emptied while the daemon runs, ...)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from syndicator.config.model import load_config
from syndicator.db.signups import check_address
from syndicator.db.store import Store
from syndicator.db.tokens import AddressTokens
from syndicator.service.daemon import Daemon
from syndicator.web.app import create_app

from .conftest import Run
from .test_daemon import write_config
from .test_signup import Site
from .test_web_hardening import answer, live
from .web_support import SECRET, built_project, served

MARIE = "marie.dupont@example.org"


pytestmark = pytest.mark.usefixtures("no_secrets")  # tests/conftest.py


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


# --- one mailbox, whichever form its domain takes ----------------------------------------------

EVRY = "contact@mairie-évry.fr"
EVRY_WIRE = "contact@xn--mairie-vry-h7a.fr"


def test_check_sees_an_address_listed_twice_in_unicode_and_idna(project: Path, run: Run) -> None:
    """`contact@mairie-évry.fr` and `contact@XN--MAIRIE-VRY-H7A.FR` are one mailbox: listed both,
    `check` says the second is listed twice, as it does for a mere change of case."""
    config = project / "config.yaml"
    text = config.read_text(encoding="utf-8")
    config.write_text(
        text + f"  - email: {EVRY}\n    frequency: daily\n  - email: {EVRY_WIRE.upper()}\n", encoding="utf-8"
    )
    lines = config.read_text(encoding="utf-8").splitlines()
    first, second = (lines.index(f"  - email: {a}") + 1 for a in (EVRY, EVRY_WIRE.upper()))
    checked = run("check")
    assert checked.code == 1
    assert (
        f"config.yaml:{second}: subscriber {EVRY_WIRE.upper()} is listed twice (first at line {first})"
        in (checked.err)
    )


def test_subscribers_add_refuses_the_idna_form_of_a_listed_address(project: Path, run: Run) -> None:
    """`subscribers add` of the IDNA form of an address already listed as typed is refused, as
    for a change of case, and config.yaml is left as it was."""
    assert run("subscribers", "add", EVRY).code == 0
    before = (project / "config.yaml").read_bytes()
    added = run("subscribers", "add", EVRY_WIRE)
    assert added.code == 1
    assert f"subscriber {EVRY_WIRE} is already listed (as {EVRY})" in added.err
    assert (project / "config.yaml").read_bytes() == before


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("SYNDICATOR_SECRET", SECRET)
    (tmp_path / "built").mkdir()
    yield from served(Site, built_project(tmp_path / "built"), tmp_path / "site")


def test_a_sign_up_of_an_address_config_lists_is_one_subscriber(site: Site, run: Run) -> None:
    """The sign-up stores `contact@mairie-évry.fr` in IDNA; config.yaml lists it as typed. Both
    name one mailbox: it is one subscriber (config.yaml's), who gets one digest, not two."""
    config = str(site.root / "config.yaml")
    assert run("subscribers", "add", EVRY, "--frequency", "monthly", "--config", config).code == 0
    assert site.sign_up(EVRY).status_code == 200
    path = site.confirm_path(site.outbox()[0])
    assert site.client.post(path, data=site.hidden(path)).status_code == 200
    listed = run("subscribers", "list", "--config", config).out.splitlines()
    rows = [line for line in listed if line.startswith(("contact@mairie-", "contact@xn--"))]
    assert len(rows) == 1 and "config.yaml" in rows[0], rows
    sent = run("digest", "send", "--frequency", "monthly", "--config", config)
    mails = [p.read_bytes() for p in (site.root / "outbox").glob("*.eml") if "-signup-" not in p.name]
    assert sum(EVRY_WIRE.encode() in m.split(b"\r\n\r\n")[0] for m in mails) == 1, sent


# --- an address cannot carry an encoded word ---------------------------------------------------

ENCODED = "=?utf-8?q?=0D=0ABcc=3A_x=40evil.test?=@example.org"


def test_an_address_holding_an_encoded_word_is_refused_everywhere(project: Path, run: Run) -> None:
    """`=?utf-8?q?…?=@example.org` is a valid RFC 5322 address, but would be an encoded word in
    the To: header (and `header_text` would change it to another mailbox): `subscribers add`,
    config.yaml and the sign-up form all refuse it."""
    added = run("subscribers", "add", ENCODED)
    assert added.code == 1 and "holds '=?'" in added.err
    config = project / "config.yaml"
    config.write_text(config.read_text(encoding="utf-8") + f"  - email: '{ENCODED}'\n", encoding="utf-8")
    checked = run("check")
    assert checked.code == 1 and f"email: '{ENCODED}' is not an email address" in checked.err
    assert check_address(ENCODED)[0] is None


# --- the daemon and a config caught empty ------------------------------------------------------


def test_a_reload_of_an_emptied_config_keeps_the_last_good_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """An editor or a `>` redirection empties config.yaml before writing it again; a reload that
    sees it then used to take it, dropping every subscriber and setting ("0 subscribers"). An
    empty file, or one of comments only, is logged and the last good config stays in use."""
    config_file = write_config(tmp_path, subscribers=2)
    config = load_config(config_file)
    good = config_file.read_text(encoding="utf-8")
    with Store.open(config.database_url) as store:
        service = Daemon(config_file, config, store)
        for emptied in ("", "\n  \n", "# la configuration\n"):
            config_file.write_text(emptied, encoding="utf-8")
            service._reload.set()  # as SIGHUP does: the stamp may not change within a test
            with caplog.at_level(logging.INFO, logger="syndicator"):
                service.maybe_reload()
            assert service.config is config
            assert f"{config_file} is empty (being saved?): keeping the last good config" in caplog.text
            assert "config reloaded" not in caplog.text
            caplog.clear()
        config_file.write_text(good, encoding="utf-8")
        service._reload.set()
        with caplog.at_level(logging.INFO, logger="syndicator"):
            service.maybe_reload()
        assert "config reloaded from" in caplog.text and len(service.config.subscribers) == 2


# --- the web app's header limit ----------------------------------------------------------------


def test_headers_over_16_kb_sent_at_once_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """h11 caps only a request head that arrives in pieces: 40 KB of small headers sent in one
    go used to be served (200). Over 16 KB is now a French 431 page and the connection closes;
    a head of 12 KB (many cookies) is still served."""
    monkeypatch.setenv("SYNDICATOR_SECRET", SECRET)
    root = built_project(tmp_path)
    with live(create_app(load_config(root / "config.yaml"))) as server:
        many = b"".join(b"X-Header-%d: %s\r\n" % (n, b"v" * 20) for n in range(1300))  # 40 KB
        assert 38_000 < len(many) < 48_000
        connection = server.connect()
        connection.sendall(b"GET /subscribe HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n")
        refused = answer(connection)
        assert refused.startswith(b"HTTP/1.1 431"), refused[:200]
        assert b"connection: close" in refused.lower() and b"Demande trop volumineuse" in refused
        cookies = b"Cookie: " + b"; ".join(b"c%d=%s" % (n, b"x" * 100) for n in range(115)) + b"\r\n"
        connection = server.connect()
        connection.sendall(b"GET /subscribe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + cookies + b"\r\n")
        assert answer(connection).startswith(b"HTTP/1.1 200")


# --- check in a folder without config.yaml -----------------------------------------------------


def test_check_in_a_folder_without_config_yaml_says_so(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Run from the wrong folder, every command quietly uses the defaults; `check` used to speak
    of config.yaml's subscribers as if the file were there. It now says the file is missing and
    what to do."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SYNDICATOR_CONFIG", raising=False)
    checked = run("check")
    assert checked.code == 1
    assert "config.yaml: warning: no such file: every setting is the default one" in checked.err
    assert "run syndicator in the folder of your config.yaml, or pass --config PATH" in checked.err


def test_interests_written_without_brackets_get_a_message_saying_to_add_them(
    run: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`thematiques: Éducation` (no brackets) used to get pydantic's "Input should be a valid
    list"; the message now shows the line to write."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "config.yaml").write_text(
        "subscribers:\n  - email: a@example.org\n"
        "    thematiques: Éducation\n    territoires: Nord, Roubaix\n",
        encoding="utf-8",
    )
    checked = run("check")
    assert checked.code == 1
    assert (
        "config.yaml:3: subscriber #1 (a@example.org), thematiques: 'Éducation' is not a list; "
        "write the names in brackets: [Éducation]"
    ) in checked.err
    assert (
        "config.yaml:4: subscriber #1 (a@example.org), territoires: 'Nord, Roubaix' is not a list"
        in checked.err
    )
    assert "valid list" not in checked.err


def test_an_unsubscribed_sign_up_stays_unsubscribed_when_config_lists_it_as_typed(
    site: Site, run: Run
) -> None:
    """Signed up on the web (stored as `contact@xn--mairie-vry-h7a.fr`) then unsubscribed by the
    link of a digest: when the admin later lists `contact@mairie-évry.fr` in config.yaml, that
    is the same mailbox, still suppressed: no digest goes to it."""
    config = str(site.root / "config.yaml")
    assert site.sign_up(EVRY).status_code == 200
    path = site.confirm_path(site.outbox()[0])
    assert site.client.post(path, data=site.hidden(path)).status_code == 200
    token = AddressTokens([SECRET], "unsubscribe").seal(EVRY_WIRE)
    one_click = site.client.post(f"/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click")
    assert one_click.status_code == 200
    assert run("subscribers", "add", EVRY, "--frequency", "monthly", "--config", config).code == 0
    listed = run("subscribers", "list", "--config", config).out.splitlines()
    [row] = [line for line in listed if line.startswith("contact@")]
    assert row.endswith("  unsubscribed (one-click (RFC 8058))"), row
    run("digest", "send", "--frequency", "monthly", "--config", config)
    mails = [p.read_bytes() for p in (site.root / "outbox").glob("*.eml") if "-signup-" not in p.name]
    assert mails and not any(EVRY_WIRE.encode() in m.split(b"\r\n\r\n")[0] for m in mails)

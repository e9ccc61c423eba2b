"""A real Dovecot IMAP server for tests, started from Debian's `dovecot-imapd` on loopback ports.

`dovecot()` starts one in a temporary folder, with its own config: any user name with the one
password (each `Dovecot.account()` a new name, hence an empty Maildir, in no time), a throwaway
self-signed certificate for localhost and 127.0.0.1, a port offering
STARTTLS and a port of implicit TLS. It runs unprivileged (as the `dovecot` user when the tests
run as root), and is stopped and its folder removed when the block ends. `ImapServer` gives the
settings a test hands to `ImapMailbox`, and a second, independent client to put messages in and
look at folders the way a person's mail program would.
"""

from __future__ import annotations

import datetime
import getpass
import ipaddress
import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from imapclient import IMAPClient

from syndicator.config.imap import ImapSettings, Tls

DOVECOT = "/usr/sbin/dovecot"
USER_ENV, PASSWORD_ENV = "SYNDICATOR_TEST_IMAP_USER", "SYNDICATOR_TEST_IMAP_PASSWORD"
# What Dovecot offers after login without MOVE (and, for `without_uidplus`, without UIDPLUS): a
# server of the kind the fallback path is for.
WITHOUT_MOVE = "IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE CHILDREN UNSELECT UIDPLUS"
WITHOUT_UIDPLUS = WITHOUT_MOVE.removesuffix(" UIDPLUS")


@dataclass
class Dovecot:
    """A running server; each `account()` is a new user with an empty mailbox."""

    folder: Path
    port: int  # IMAP, offering STARTTLS
    ssl_port: int  # IMAP over implicit TLS
    certificate: Path  # the self-signed certificate the server presents
    password: str
    accounts: int = 0

    def account(self) -> ImapServer:
        """A new user, with its own empty Maildir (the server takes any name with the password)."""
        self.accounts += 1
        username = f"bounces{self.accounts}"
        return ImapServer(self.port, self.ssl_port, username, self.password, self.certificate)


@dataclass(frozen=True)
class ImapServer:
    """One user's view of the server: the settings to reach it, and another client."""

    port: int
    ssl_port: int
    username: str
    password: str
    certificate: Path

    @property
    def environment(self) -> dict[str, str]:
        """The variables `settings()` names, with this server's login."""
        return {USER_ENV: self.username, PASSWORD_ENV: self.password}

    def settings(self, tls: Tls = "ssl", **changes: Any) -> ImapSettings:
        """Settings for this server over `tls`, trusting its certificate; `changes` override."""
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": self.ssl_port if tls == "ssl" else self.port,
            "tls": tls,
            "username_env": USER_ENV,
            "password_env": PASSWORD_ENV,
            "ca_file": self.certificate,
            "timeout": 5.0,
        }
        return ImapSettings.model_validate(values | changes)

    @contextmanager
    def client(self) -> Iterator[IMAPClient]:
        """Another client, logged in over implicit TLS: a person's mail program."""
        context = ssl.create_default_context(cafile=str(self.certificate))
        with IMAPClient("127.0.0.1", self.ssl_port, ssl_context=context, timeout=5.0) as client:
            client.plain_login(self.username, self.password)  # LOGIN takes ASCII only
            yield client

    def append(self, raw: bytes, *, folder: str = "INBOX", flags: Sequence[bytes] = ()) -> int:
        """Deliver a message into `folder`; its UID."""
        with self.client() as client:
            reply = client.append(folder, raw, flags=flags)
            found = re.search(rb"APPENDUID \d+ (\d+)", reply)
            if found:
                return int(found[1])
            client.select_folder(folder, readonly=True)  # a server without UIDPLUS: the newest
            return int(max(client.search(["ALL"])))

    def contents(self, folder: str = "INBOX") -> list[tuple[bytes, tuple[bytes, ...]]]:
        """Each message of `folder`, oldest first: its bytes and its flags."""
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            uids = sorted(client.search(["ALL"]))
            fetched = client.fetch(uids, ["BODY.PEEK[]", "FLAGS"]) if uids else {}
        return [(fetched[uid][b"BODY[]"], tuple(fetched[uid][b"FLAGS"])) for uid in uids]

    def folders(self) -> set[str]:
        with self.client() as client:
            return {str(name) for _flags, _separator, name in client.list_folders()}


def _free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    addresses = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(addresses), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


# The penalty Dovecot puts on an address after a failed login (seconds of delay before the next)
# is off (mode 0 on its socket), and so is the delay of a failure: the wrong-password test must not
# slow the others down.
def _config(
    folder: Path,
    *,
    user: str,
    port: int,
    ssl_port: int,
    password: str,
    capabilities: str | None,
    prefix: str,
) -> str:
    namespace = (
        f"namespace inbox {{\n  inbox = yes\n  prefix = {prefix}\n  separator = .\n}}" if prefix else ""
    )
    cert, key = folder / "cert.pem", folder / "key.pem"
    return f"""
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
default_login_user = {user}
default_internal_user = {user}
first_valid_uid = 1
auth_failure_delay = 0
mail_location = maildir:~/Maildir
{"" if capabilities is None else f"imap_capability = {capabilities}"}
{namespace}
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = home={folder}/home/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {port}
  }}
  inet_listener imaps {{
    port = {ssl_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  chroot =
}}
"""


def _ready(process: subprocess.Popen[bytes], port: int, ssl_port: int) -> bool:
    """Whether Dovecot greets on `port` and accepts on `ssl_port` within 10 s, still running."""
    deadline = time.monotonic() + 10
    while process.poll() is None and time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0) as probe:
                greeted = b"Dovecot" in probe.recv(200)
            with socket.create_connection(("127.0.0.1", ssl_port), timeout=1.0):
                pass
        except OSError:
            greeted = False
        if greeted:
            return process.poll() is None
        time.sleep(0.02)
    return False


@contextmanager
def dovecot(
    *, password: str = "pa\"ss'wörd", capabilities: str | None = None, prefix: str = ""
) -> Iterator[Dovecot]:
    """A Dovecot server for the block; `capabilities` replaces what it offers after login;
    `prefix` is its personal namespace's (`INBOX.`: every folder under the inbox, as Courier
    does); `password` is every account's (no spaces: Dovecot's static passdb splits on them)."""
    if not os.access(DOVECOT, os.X_OK):
        raise RuntimeError("Dovecot is needed: apt-get install dovecot-imapd")
    folder = Path(tempfile.mkdtemp(prefix="syndicator-imap-"))
    as_root = os.geteuid() == 0
    user = "dovecot" if as_root else getpass.getuser()
    account = pwd.getpwnam(user)
    try:
        _certificate(folder)
        failures: list[str] = []
        for _attempt in range(3):  # a free port can be taken by another process before Dovecot binds it
            port, ssl_port = _free_port(), _free_port()
            (folder / "dovecot.conf").write_text(
                _config(
                    folder,
                    user=user,
                    port=port,
                    ssl_port=ssl_port,
                    password=password,
                    capabilities=capabilities,
                    prefix=prefix,
                ),
                encoding="utf-8",
            )
            if as_root:
                for path in [folder, *folder.rglob("*")]:
                    os.chown(path, account.pw_uid, account.pw_gid)
            with (folder / "startup.log").open("ab") as output:  # what Dovecot says before its log opens
                process = subprocess.Popen(
                    [DOVECOT, "-F", "-c", str(folder / "dovecot.conf")],
                    stdout=output,
                    stderr=output,
                    user=account.pw_uid if as_root else None,
                    group=account.pw_gid if as_root else None,
                    extra_groups=[] if as_root else None,
                )
            try:
                if _ready(process, port, ssl_port):
                    yield Dovecot(folder, port, ssl_port, folder / "cert.pem", password)
                    return
            finally:
                _stop(process)
            failures += [
                log.read_text(errors="replace")
                for log in (folder / "startup.log", folder / "dovecot.log")
                if log.exists()
            ]
        raise RuntimeError("Dovecot did not start:\n" + "\n".join(failures))
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

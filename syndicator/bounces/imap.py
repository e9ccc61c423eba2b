"""The bounce mailbox read over IMAP: one folder's messages, oldest first, each moved away once handled.

`ImapMailbox` lists the configured folder in the order the messages arrived (UID order), giving
each message's bytes, or only its size when it is larger than `max_bytes` (the size is asked
first, and a body is never downloaded beyond `max_bytes`). A handled message is moved to the
`processed` or `unrecognised` folder, created when missing; nothing is ever deleted: without the
MOVE extension a message is copied, flagged `\\Deleted` and expunged by its UID alone (UIDPLUS),
so that messages another client marked deleted stay where they are. Messages already flagged
`\\Deleted` are not listed: they are on their way out, and not ours.

Every network step has a timeout (`timeout`, 30 s by default: connecting, the TLS handshake and
each command); whatever fails becomes `MailboxUnavailable`, which says the server, the step and
what to do. The login comes from environment variables named in the settings, as for SMTP, and is
never sent in plain text except to a server on this machine.
"""

from __future__ import annotations

import difflib
import logging
import os
import socket
import ssl
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, Self, TypeVar

from imapclient import IMAPClient
from imapclient.exceptions import CapabilityError, IMAPClientError, LoginError

from syndicator.bounces.mailbox import Folder, MailboxMessage, MailboxUnavailable
from syndicator.config.imap import ImapSettings

log = logging.getLogger(__name__)

_BATCH = 500  # sizes asked per FETCH: one command for a normal mailbox, bounded for a huge one
_T = TypeVar("_T")


class ImapMailbox:
    """The folder `settings` names, on one IMAP connection opened by `with` and closed after."""

    def __init__(self, settings: ImapSettings, *, max_bytes: int) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.settings = settings
        self.max_bytes = max_bytes
        self._client: IMAPClient | None = None
        self._validity = 0
        self._folders: dict[str, str] = {}  # destination -> its name on the server, once it exists

    @property
    def address(self) -> str:
        return f"{self.settings.host}:{self.settings.port}"

    def __repr__(self) -> str:
        return f"ImapMailbox({self.address}, tls={self.settings.tls!r}, folder={self.settings.folder!r})"

    def __enter__(self) -> Self:
        username, password = self._credentials()
        settings = self.settings
        context = None if settings.tls == "none" else self._tls_context()
        client = self._call(
            "connecting",
            lambda: IMAPClient(
                settings.host,
                settings.port,
                ssl=settings.tls == "ssl",
                ssl_context=context,
                timeout=settings.timeout,
            ),
        )
        self._client = client
        try:
            if settings.tls == "starttls":
                self._call("STARTTLS", lambda: client.starttls(context))
            if username.isascii() and password.isascii():
                self._call("login", lambda: client.login(username, password))
            else:  # LOGIN takes ASCII only; SASL PLAIN carries UTF-8
                self._call("login", lambda: client.plain_login(username, password))
            self._select(client)
        except BaseException:
            self._client = None
            _close(client)
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except (IMAPClientError, OSError) as failure:
            log.debug("IMAP logout from %s: %s", self.address, failure)
        finally:
            _close(client)

    def messages(self) -> Iterator[MailboxMessage]:
        """The folder's messages not flagged deleted, oldest first; bytes only up to `max_bytes`."""
        client = self._connected()
        folder = self.settings.folder
        uids = sorted(self._call(f"listing folder {folder!r}", lambda: client.search(["UNDELETED"])))
        for start in range(0, len(uids), _BATCH):
            batch = uids[start : start + _BATCH]
            sizes = self._sizes(client, batch)
            for uid in batch:
                size = sizes.get(uid, {}).get(b"RFC822.SIZE")
                if not isinstance(size, int):
                    continue  # expunged by another client meanwhile
                key = f"{self._validity}.{uid}"
                if size > self.max_bytes:
                    yield MailboxMessage(key, None, size)
                    continue
                raw = self._body(client, uid)
                if raw is None:
                    continue
                if len(raw) > self.max_bytes:  # the size announced was wrong: trust what came
                    yield MailboxMessage(key, None, max(size, len(raw)))
                else:
                    yield MailboxMessage(key, raw, len(raw))

    def move(self, key: str, folder: Folder) -> None:
        """Move that message to the folder, creating it if missing; nothing else is touched."""
        client = self._connected()
        uid = self._uid(key)
        target = self._destination(client, folder)
        where = f"moving message {uid} to {target!r}"
        if client.has_capability("MOVE"):
            self._call(where, lambda: client.move([uid], target))
            return
        self._call(where, lambda: client.copy([uid], target))
        self._call(where, lambda: client.add_flags([uid], [b"\\Deleted"], silent=True))
        if client.has_capability("UIDPLUS"):
            self._call(where, lambda: client.uid_expunge([uid]))
        else:  # a plain EXPUNGE would also remove what others marked deleted: leave it flagged
            log.info("%s has neither MOVE nor UIDPLUS: message %s left flagged \\Deleted", self.address, uid)

    # -- the steps

    def _credentials(self) -> tuple[str, str]:
        found: list[str] = []
        for key in ("username_env", "password_env"):
            variable: str = getattr(self.settings, key)
            value = os.environ.get(variable)
            if value is None:
                raise MailboxUnavailable(
                    f"email.bounces.imap.{key} names ${variable}, which is not set; export it before "
                    f"running (the IMAP server {self.address} is not contacted without it)",
                    hint=f"export {variable}=... in the environment of syndicator",
                )
            found.append(value)
        return found[0], found[1]

    def _tls_context(self) -> ssl.SSLContext:
        ca_file = self.settings.ca_file
        try:
            return ssl.create_default_context(cafile=None if ca_file is None else str(ca_file))
        except (OSError, ssl.SSLError) as error:
            raise MailboxUnavailable(
                f"cannot read email.bounces.imap.ca_file {ca_file}: {error}",
                hint="give a PEM file of the certificate (or its authority) the IMAP server presents",
            ) from None

    def _select(self, client: IMAPClient) -> None:
        folder = self.settings.folder
        try:
            selected = client.select_folder(folder)
        except IMAPClientError as error:
            if not self._call("looking for the folder", lambda: client.folder_exists(folder)):
                listed = self._call("listing the folders", client.list_folders)
                names = [str(name) for _flags, _sep, name in listed]
                guess = difflib.get_close_matches(folder, names, n=1)
                known = f"did you mean {guess[0]!r}?" if guess else f"it has: {', '.join(sorted(names))}"
                raise MailboxUnavailable(
                    f"IMAP server {self.address} has no folder {folder!r}",
                    hint=f"set email.bounces.imap.folder to one of its folders; {known}",
                ) from None
            raise self._unavailable(f"opening folder {folder!r}", error) from None
        self._validity = int(selected.get(b"UIDVALIDITY", 0))

    def _sizes(self, client: IMAPClient, uids: list[int]) -> dict[int, dict[bytes, Any]]:
        found = self._call("reading sizes", lambda: client.fetch(uids, ["RFC822.SIZE"]))
        return dict(found)

    def _body(self, client: IMAPClient, uid: int) -> bytes | None:
        # A partial fetch one byte past the limit: a server lying about sizes cannot make us download more.
        item = f"BODY.PEEK[]<0.{self.max_bytes + 1}>"
        found = self._call(f"fetching message {uid}", lambda: client.fetch([uid], [item]))
        data = found.get(uid, {})
        raw = data.get(b"BODY[]<0>", data.get(b"BODY[]"))
        return raw if isinstance(raw, bytes) else None

    def _destination(self, client: IMAPClient, folder: Folder) -> str:
        if folder in self._folders:
            return self._folders[folder]
        prefix = ""
        if client.has_capability("NAMESPACE"):
            personal = self._call("asking the namespace", client.namespace).personal
            if personal:
                prefix = str(personal[0][0])  # "INBOX." on servers that keep folders under the inbox
        target = prefix + folder
        if not self._call(f"looking for folder {target!r}", lambda: client.folder_exists(target)):
            try:
                client.create_folder(target)
            except IMAPClientError as error:
                if not client.folder_exists(target):  # else another run created it meanwhile
                    raise self._unavailable(f"creating folder {target!r}", error) from None
            try:
                client.subscribe_folder(target)  # so that mail programs show it
            except IMAPClientError as error:
                log.debug("subscribing to %s on %s: %s", target, self.address, error)
        self._folders[folder] = target
        return target

    def _uid(self, key: str) -> int:
        validity, _, uid = key.partition(".")
        if not (validity.isdigit() and uid.isdigit()):
            raise ValueError(f"not a message key of this mailbox: {key!r}")
        if int(validity) != self._validity:
            raise MailboxUnavailable(
                f"folder {self.settings.folder!r} on {self.address} was rebuilt (UIDVALIDITY changed) "
                f"since message {key} was listed; it was not moved",
                hint="nothing was lost: the messages are listed again at the next run",
            )
        return int(uid)

    def _connected(self) -> IMAPClient:
        if self._client is None:
            raise RuntimeError("use the mailbox inside `with ImapMailbox(...) as mailbox:`")
        return self._client

    def _call(self, what: str, step: Callable[[], _T]) -> _T:
        try:
            return step()
        except (IMAPClientError, OSError) as error:
            raise self._unavailable(what, error) from None

    def _unavailable(self, what: str, error: BaseException) -> MailboxUnavailable:
        settings, again = self.settings, "the bounces are read again at the next run"
        if isinstance(error, TimeoutError):
            reason = f"no answer within {settings.timeout:g} s"
            hint = (
                "check that the server is up and that host and port are right (tls: ssl is usually "
                f"port 993, starttls port 143: on the wrong port both ends wait); {again}"
            )
        elif isinstance(error, ConnectionRefusedError):
            reason, hint = "connection refused", f"check email.bounces.imap.host and port; {again}"
        elif isinstance(error, socket.gaierror):
            reason, hint = f"unknown host ({error.strerror})", "check email.bounces.imap.host"
        elif isinstance(error, ssl.SSLCertVerificationError):
            reason = f"certificate not trusted: {error.verify_message}"
            hint = "if the server's certificate comes from your own authority, set email.bounces.imap.ca_file"
        elif isinstance(error, ssl.SSLError):
            reason = f"TLS failed: {error.reason or error}"
            hint = "tls: ssl is for a port of implicit TLS (usually 993), tls: starttls for port 143"
        elif isinstance(error, CapabilityError) and what == "STARTTLS":
            reason = "the server does not offer STARTTLS"
            hint = "use tls: ssl (port 993); nothing is ever sent in plain text"
        elif isinstance(error, LoginError):
            reason = f"login refused for user {self._user()!r}: {_text(error)}"
            hint = (
                f"check the values of ${settings.username_env} and ${settings.password_env}; "
                "nothing was read or moved"
            )
        else:
            reason, hint = _text(error) or type(error).__name__, again
        return MailboxUnavailable(f"IMAP server {self.address}: {what} failed: {reason}", hint=hint)

    def _user(self) -> str:
        return os.environ.get(self.settings.username_env, "")


def _text(error: BaseException) -> str:
    """An imaplib error's text: bytes from the server shown as text, on one line."""
    text = str(error)
    if text.startswith(("b'", 'b"')) and text.endswith(("'", '"')):
        text = text[2:-1]
    return " ".join(text.split())[:300]


def _close(client: IMAPClient) -> None:
    """Close the socket whatever state the session is in."""
    try:
        client.shutdown()
    except (IMAPClientError, OSError) as error:
        log.debug("IMAP shutdown: %s", error)

"""The Maildir bounce mailbox: oldest first, moved never deleted, big messages left unread."""

from __future__ import annotations

import mailbox
import os
from pathlib import Path

import pytest

from syndicator.bounces.mailbox import MailboxUnavailable, MaildirMailbox


def _deliver(folder: Path, data: bytes, mtime: float) -> str:
    key = mailbox.Maildir(folder, create=True).add(data)
    path = folder / "new" / key
    os.utime(path, (mtime, mtime))
    return key


def test_messages_come_oldest_first_and_moves_keep_them(tmp_path: Path) -> None:
    """The inbox is read oldest first; a moved message lands in `.processed/cur`, whole, seen."""
    folder = tmp_path / "bounces"
    _deliver(folder, b"Subject: second\n\nb", 2_000_000_000)
    _deliver(folder, b"Subject: first\n\na", 1_000_000_000)
    with MaildirMailbox(folder) as box:
        found = list(box.messages())
        assert [m.raw for m in found] == [b"Subject: first\n\na", b"Subject: second\n\nb"]
        box.move(found[0].key, "processed")
        box.move(found[1].key, "unrecognised")
        assert list(box.messages()) == []
    [kept] = (folder / ".processed" / "cur").iterdir()
    assert kept.read_bytes() == b"Subject: first\n\na" and kept.name.endswith(":2,S")
    assert [p.read_bytes() for p in (folder / ".unrecognised" / "cur").iterdir()] == [b"Subject: second\n\nb"]
    # A mail reader sees the folders: they are Maildirs themselves.
    assert sorted(mailbox.Maildir(folder).list_folders()) == ["processed", "unrecognised"]


def test_a_message_over_max_bytes_is_not_read(tmp_path: Path) -> None:
    """A message larger than max_bytes comes with `raw` None and its size."""
    folder = tmp_path / "bounces"
    _deliver(folder, b"x" * 20_001, 1_000_000_000)
    with MaildirMailbox(folder, max_bytes=20_000) as box:
        [message] = box.messages()
    assert (message.raw, message.size) == (None, 20_001)


def test_a_folder_that_is_not_a_maildir_is_unavailable(tmp_path: Path) -> None:
    """A missing or plain folder raises MailboxUnavailable naming it, with a hint."""
    with pytest.raises(MailboxUnavailable) as caught, MaildirMailbox(tmp_path / "nowhere"):
        pass
    assert str(tmp_path / "nowhere") in str(caught.value) and "new/" in str(caught.value)
    assert caught.value.hint and "email.bounces.maildir" in caught.value.hint


def test_a_key_from_elsewhere_is_refused(tmp_path: Path) -> None:
    """`move` takes only keys of the inbox: no path may lead it out of the Maildir."""
    folder = tmp_path / "bounces"
    mailbox.Maildir(folder, create=True)
    with MaildirMailbox(folder) as box, pytest.raises(ValueError, match="not a key"):
        box.move("new/../../etc", "processed")

"""A worker whose claim runs out before a digest is taken (a machine so loaded that its heartbeat
could not renew the lease): the digest is not counted done, so the run still sends it."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from syndicator.config.model import load_config
from syndicator.db import runs as runs_module
from syndicator.db.ledger import Ledger
from syndicator.db.store import Store
from syndicator.digests.run import DigestRun
from syndicator.digests.send import send_digests

from .smtp_server import SlowHandler, message_ids, smtp_server
from .test_delivery_smtp import project

pytestmark = [
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning"),
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
]


def test_a_digest_whose_claim_ran_out_before_it_was_taken_is_still_sent_in_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The heartbeat is held still (as a starved thread would be) and the relay takes longer to
    answer than the lease: the later digests of each batch find their claim run out when their
    turn comes. Each is then left to be claimed again, not confirmed done: one run delivers every
    digest, once, and the ledger has them all sent."""
    monkeypatch.setattr(runs_module.Heartbeat, "_beating", lambda self: None)
    subscribers = 9  # claimed three at a time (a third of what is due)
    handler = SlowHandler(0.15)  # each reply: about 0.75 s a message, more than the lease
    with smtp_server(handler) as port:
        config = load_config(project(tmp_path, port, connections=1, subscribers=subscribers))
        with Store.open(config.database_url) as store:
            report = send_digests(DigestRun(store, config, now=datetime.now(UTC)), lease=0.5)
            assert Ledger(store).counts() == {"sent": subscribers}
    assert report.sent == subscribers
    recipients = Counter(recipient for recipient, _ in message_ids(handler))
    assert recipients == {f"s{n}@example.org": 1 for n in range(subscribers)}

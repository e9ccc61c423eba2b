"""One owner per concept: each thing the code knows (a transport, a frequency, a name's folded
form, the look-back, who subscribes) is decided in one module that every user of it imports."""

from __future__ import annotations

from .test_layers import graph


def _imports_of(package: str) -> set[str]:
    edges = graph()
    return {target for source, targets in edges.items() if source.startswith(package) for target in targets}


def test_the_web_app_needs_no_digest_code_for_the_dkim_key_or_the_transport() -> None:
    """The web app signs and sends its own emails with the mail layer's DKIM loader and
    transport factory: it imports nothing of digests (selection, rendering, the send run)."""
    assert not {m for m in _imports_of("syndicator.web") if m.startswith("syndicator.digests")}
    assert "syndicator.digests.send" not in graph()["syndicator.cli.checks"]


def test_explaining_an_item_needs_none_of_the_send_machinery() -> None:
    """`digest explain` and `digest preview` use the run context alone: the claims, the workers,
    the transports and the tallies of a send are not imported to explain an item."""
    edges = graph()
    sending = {
        "syndicator.digests.send",
        "syndicator.db.runs",
        "syndicator.mail.smtp",
        "syndicator.digests.tally",
    }
    assert not (edges["syndicator.digests.explain"] | edges["syndicator.digests.run"]) & sending

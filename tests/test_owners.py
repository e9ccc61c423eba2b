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

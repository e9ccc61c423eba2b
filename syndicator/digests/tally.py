"""What a send did, counted: one outcome per subscriber considered, so the summary adds up."""

from __future__ import annotations

from dataclasses import dataclass, field

from syndicator.config.subscribers import Subscriber
from syndicator.i18n import N_


@dataclass(slots=True)
class SendReport:
    """What one send did, one outcome per subscriber considered."""

    sent: int = 0
    empty: int = 0
    failed: int = 0  # of which `temporary` are left pending for the next run
    suppressed: int = 0
    temporary: int = 0
    stopped: int = 0  # left pending because the run was asked to stop (SIGTERM)
    errors: list[str] = field(default_factory=list)  # "address: reason", one per failed subscriber

    def summary(self) -> str:
        failed = N_("failed {failed}", failed=self.failed)
        if self.failed:
            failed = N_(
                "failed {failed} ({temporary} temporary, {permanent} permanent)",
                failed=self.failed, temporary=self.temporary, permanent=self.failed - self.temporary,
            )  # fmt: skip
        stopped = N_(", stopped before sending {stopped}", stopped=self.stopped) if self.stopped else ""
        return N_(
            "sent {sent}, empty {empty}, {failed}, suppressed {suppressed}{stopped}",
            sent=self.sent, empty=self.empty, failed=failed, suppressed=self.suppressed, stopped=stopped,
        )  # fmt: skip


def tally(report: SendReport, subscriber: Subscriber, results: list[str], reason: str | None, *,
           suppressed: bool, would_send: bool) -> str:  # fmt: skip
    """One outcome per subscriber, so that the parts of the summary add up; that outcome."""
    if suppressed or "suppressed" in results:
        report.suppressed += 1
        return "suppressed"
    if "stopped" in results:
        report.stopped += 1
        return "stopped"
    if {"bad_mailbox", "failed", "temporary", "unbuilt"} & set(results):
        report.failed += 1
        report.temporary += "temporary" in results and not {"failed", "bad_mailbox", "unbuilt"} & set(results)
        report.errors.append(f"{subscriber.email}: {reason or 'delivery failed'}")
        return "failed"
    if "sent" in results or would_send:
        report.sent += 1
        return "sent"
    if "busy" in results:
        return "busy"
    report.empty += 1
    return "empty"

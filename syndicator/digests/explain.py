"""Why an item goes, or not, to a subscriber's next digest: each rule's say, in plain words
(`syndicator digest explain`)."""

from __future__ import annotations

from syndicator.config.subscribers import Subscriber
from syndicator.digests.run import DigestRun
from syndicator.digests.select import Candidate, lookback_start, publication_day
from syndicator.errors import SyndicatorError
from syndicator.i18n import N_
from syndicator.taxonomy.matching import verdicts


def explain(run: DigestRun, subscriber: Subscriber, url: str) -> tuple[bool, list[str]]:
    """Whether an item goes to a subscriber's next digest, and each rule's say, in plain words.

    Raises `SyndicatorError` when the store has no item of that URL (with the stored URL it
    looks like, if one differs only by scheme, `www.`, case or a trailing slash)."""
    candidate = next((c for c in run.candidates if c.item.url == url), None)
    if candidate is None:
        headers = run.store.item_headers()
        header = next((s for s in headers if s.url == url), None)
        if header is None:
            alike = [s.url for s in headers if _url_key(s.url) == _url_key(url)]
            raise SyndicatorError(
                N_("no item with the URL {url} in the store", url=url),
                hint=N_("did you mean {url}?", url=alike[0]) if alike else N_(
                    "run 'syndicator ingest' first; 'syndicator parse FILE' shows an item's URL"
                ),
            )  # fmt: skip
        candidate = Candidate(header.id, run.store.items_by_id([header.id])[header.id], header.first_seen)
    item, ok = candidate.item, True
    lines: list[str] = []
    zone = run.config.site.zone  # every day and time below is the site's
    for verdict in verdicts(run.interests(subscriber), item, run.hierarchy):
        reason = verdict.reason
        lines.append(
            N_("passes: {reason}", reason=reason) if verdict.passed else N_("stops:  {reason}", reason=reason)
        )
        ok = ok and verdict.passed
    suppressed = run.ledger.suppressed().get(subscriber.key)
    if suppressed:
        ok = False
        reason, since = suppressed
        since = since.astimezone(zone)
        lines.append(N_(
            "stops:  the address is on the suppression list ({reason}, since {since:%Y-%m-%d})",
            reason=reason, since=since,
        ))  # fmt: skip
    sent = run.ledger.sent_on(subscriber.key, candidate.id)
    if sent is not None:
        ok = False
        lines.append(N_(
            "stops:  already in digest {id} of {issued:%Y-%m-%d %H:%M} ({state})",
            id=sent.message_id, issued=sent.issued.astimezone(zone), state=sent.state,
        ))  # fmt: skip
    else:
        last = run.lasts.get(subscriber.key)
        if last is not None and candidate.first_seen <= last.issued:
            ok = False
            lines.append(N_(
                "stops:  first seen {seen:%Y-%m-%d %H:%M}, before the last digest ({last:%Y-%m-%d %H:%M})",
                seen=candidate.first_seen.astimezone(zone), last=last.issued.astimezone(zone),
            ))  # fmt: skip
        lookback = run.config.email.lookback_days.days(subscriber.frequency)
        day = publication_day(candidate, zone)
        oldest = lookback_start(run.now, lookback, zone)
        if day < oldest:
            ok = False
            lines.append(N_(
                "stops:  published {day:%Y-%m-%d}, outside the {frequency} look-back of {days} days",
                day=day, frequency=subscriber.frequency, days=lookback,
            ))  # fmt: skip
        else:
            lines.append(N_(
                "passes: published {day:%Y-%m-%d}, within the {days}-day look-back", day=day, days=lookback
            ))  # fmt: skip
    return ok, lines


def _url_key(url: str) -> str:
    """A URL as an admin may mistype it: no scheme, no `www.`, no trailing slash, any case."""
    rest = url.strip().lower().partition("://")[2] or url.strip().lower()
    return rest.removeprefix("www.").rstrip("/")

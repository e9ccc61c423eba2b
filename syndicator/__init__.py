"""syndicator: turn a store of news items into RSS/Atom feeds and email digests."""

__version__ = "0.1.0"

"""The bounce mailbox: reading it, parsing reports, tying them to digests."""

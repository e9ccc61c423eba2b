"""The store's items as RSS/Atom feeds, their indexes, and their HTTP server."""

"""`syndicator serve`: feeds over HTTP and the subscribers' pages."""

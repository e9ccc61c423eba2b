"""The store's items as digest emails: selection, rendering, sending, explaining."""

"""The RGPD: the notice, consents, exports, erasure and retention periods."""

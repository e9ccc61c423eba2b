"""What leaves by email, for digests and web pages alike: messages, transports, SMTP, DKIM, VERP."""

"""config.yaml: its schema and defaults, the frequencies, crontab times, its editing, the Subscriber value."""

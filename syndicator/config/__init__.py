"""config.yaml: its schema and defaults, crontab times, its editing, the Subscriber value."""

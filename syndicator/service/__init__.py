"""The unattended service: one cycle, the schedule, the daemon and its lock."""

"""Tables and clients of the internal HTTP APIs (reporting, notifier)."""

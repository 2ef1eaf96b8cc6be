"""Tables of the notifier database."""

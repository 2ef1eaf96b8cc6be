"""Messages produced by the notifier (one module per major version)."""

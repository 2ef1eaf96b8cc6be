"""Messages produced by the deadletter (one module per major version)."""

"""Message handlers (read-model updates) and report queries."""

"""Messages produced by the loyalty (one module per major version)."""

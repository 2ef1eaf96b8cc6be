"""Messages produced by the gateway (one module per major version)."""

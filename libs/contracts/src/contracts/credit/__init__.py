"""Messages produced by the credit (one module per major version)."""

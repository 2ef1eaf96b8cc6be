"""Database side of the credit service: tables and the ledger repository."""

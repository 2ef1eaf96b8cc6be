"""The credit ledger as plain Python: no database, no messaging, Decimal money."""

"""The credit service: the VIP credit ledger and the till saga it orchestrates with loyalty."""

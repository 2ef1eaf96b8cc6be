"""Use cases: master data, idempotency, till operations and their outcomes."""

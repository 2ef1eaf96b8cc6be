"""The loyalty service: the bonus ledger of every customer (see docs/architecture.md)."""

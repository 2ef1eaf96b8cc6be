"""Runtime plumbing shared by every service (see docs/architecture.md)."""

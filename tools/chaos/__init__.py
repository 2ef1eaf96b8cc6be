"""The fault harness (issue 7): seeded POS traffic through the gateway while processes of a
devstack stack are killed by PID, then invariants through the public API. See README.md."""

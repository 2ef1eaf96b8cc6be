"""Pure business rules of the gateway: no I/O, Decimal money."""

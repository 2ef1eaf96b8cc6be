"""Handlers of the credit service: the till saga, the overdue scan, internal reads."""

"""Errors of the bonus domain."""

from __future__ import annotations


class InvalidOperation(ValueError):
    """An operation that contradicts itself or the ledger; it can never be applied."""

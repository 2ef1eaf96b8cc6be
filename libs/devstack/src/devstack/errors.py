"""The one exception devstack raises for anything that did not start or stop as expected."""

from __future__ import annotations


class DevstackError(RuntimeError):
    """A piece of the local stack failed; the message carries the relevant log tail."""

"""The ASGI app and the internal task API."""

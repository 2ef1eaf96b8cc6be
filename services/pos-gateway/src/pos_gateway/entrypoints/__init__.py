"""The ASGI app and its public HTTP routes."""

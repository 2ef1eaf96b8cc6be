"""The ASGI app, the internal HTTP API and the rebuild command."""

"""How loyalty is run: the ASGI app (consumers, relay, expiry job) and its internal HTTP API."""

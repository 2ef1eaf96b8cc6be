"""How the credit service is run: the ASGI app (consumers, jobs, internal HTTP)."""

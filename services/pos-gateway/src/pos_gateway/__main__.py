"""`python -m pos_gateway`: run the gateway (HTTP API, consumers, outbox relay, jobs)."""

from pos_gateway.entrypoints.app import app, settings
from servicekit.runtime import serve

if __name__ == "__main__":
    serve(app, settings)

"""`python -m pos_gateway`: run the gateway (HTTP API, consumers, outbox relay, jobs)."""

from servicekit.runtime import serve

from pos_gateway.entrypoints.app import app, settings

if __name__ == "__main__":
    serve(app, settings)

"""``python -m loyalty``: run the loyalty service (consumers, outbox relay, expiry job, HTTP)."""

from __future__ import annotations

from servicekit.runtime import serve

from loyalty.entrypoints.app import app, settings


def main() -> None:
    serve(app, settings)


if __name__ == "__main__":
    main()

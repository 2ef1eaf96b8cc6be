"""``python -m loyalty``: run the loyalty service (consumers, outbox relay, expiry job, HTTP)."""

from __future__ import annotations

from loyalty.entrypoints.app import app, settings
from servicekit.runtime import serve


def main() -> None:
    serve(app, settings)


if __name__ == "__main__":
    main()

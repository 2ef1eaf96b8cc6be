"""The chaos harness lives in tools/chaos (run as `python -m tools.chaos` from the repository
root); pytest's importlib mode does not put the root on sys.path, so this does.

SIGTERM ends a run as Ctrl-C does (KeyboardInterrupt): the harness then stops the stack it
started (`scripts/test.sh` stops the short chaos run that way when the rest of `make test`
fails)."""

from __future__ import annotations

import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import pytest

ROOT = str(Path(__file__).resolve().parents[2])
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


signal.signal(signal.SIGTERM, _interrupt)


@pytest.fixture
def send_answered() -> Callable[..., Awaitable[Any]]:
    """`send_answered(customers, op, key, responses)`: the harness's `Driver` sends one
    operation to a gateway that answers with `responses`, in order (no server); the driver
    is returned with what it recorded."""
    from tools.chaos.driver import CustomerModel, Driver, Operation

    async def send(
        customers: list[CustomerModel],
        op: Operation,
        key: str,
        responses: Sequence[httpx.Response],
    ) -> Driver:
        answers = list(responses)
        driver = Driver(
            "http://gateway.test",
            customers,
            seed=1,
            ops_per_customer=1,
            deadline=float("inf"),
            transport=httpx.MockTransport(lambda _: answers.pop(0)),
        )
        async with httpx.AsyncClient(
            base_url="http://gateway.test", transport=driver.transport
        ) as http:
            await driver.send(http, op, key)
        return driver

    return send

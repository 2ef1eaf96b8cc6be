"""What devstack starts is stopped at the end of its `with` block, also when the block raises."""

from __future__ import annotations

import pytest

from devstack.procs import StoppedOnExit


class Started(StoppedOnExit):
    def __init__(self) -> None:
        self.stops = 0

    def stop(self) -> None:
        self.stops += 1


def test_a_with_block_stops_what_it_started_once() -> None:
    with Started() as started:
        assert started.stops == 0
    assert started.stops == 1


def test_a_with_block_that_raises_still_stops_and_lets_the_error_through() -> None:
    started = Started()
    with pytest.raises(RuntimeError, match="boom"), started:
        raise RuntimeError("boom")
    assert started.stops == 1

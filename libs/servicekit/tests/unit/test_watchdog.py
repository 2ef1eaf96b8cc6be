"""The consumer watchdog: a subscriber whose Kafka client keeps failing its probe for the stall
period is restarted once per period; a passing probe resets the clock; a subscriber whose old
client never finishes stopping, or whose stop ends in a cancellation of the client's own tasks,
is still restarted with a new one."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

import pytest
from aiokafka.errors import KafkaConnectionError

from servicekit import metrics
from servicekit.consumer import Consumer
from servicekit.watchdog import ConsumerWatchdog


class FakeClient:
    def __init__(self, healthy: bool = True, assigned: tuple[Any, ...] = ("tp",)) -> None:
        self.healthy = healthy
        self.assigned = assigned
        self.stopped = False
        self.probes = 0

    def assignment(self) -> set[Any]:
        return set(self.assigned)

    async def end_offsets(self, partitions: list[Any]) -> dict[Any, int]:
        self.probes += 1
        if self.healthy is None:  # wedged: the request never completes
            await asyncio.sleep(3600)
        if not self.healthy:
            raise KafkaConnectionError("Unable to connect")
        return dict.fromkeys(partitions, 0)

    async def topics(self) -> set[str]:
        return await self.end_offsets([])  # type: ignore[return-value]

    async def stop(self) -> None:
        self.stopped = True


class FakeSubscriber:
    def __init__(
        self, client: FakeClient, *, stop_hangs: bool = False, stop_leaks_cancel: bool = False
    ) -> None:
        self.consumer: FakeClient | None = client
        self.stop_hangs = stop_hangs
        self.stop_leaks_cancel = stop_leaks_cancel
        self.starts = 0
        self.stops = 0
        self.tasks: list[asyncio.Task[Any]] = []

    async def stop(self) -> None:
        self.stops += 1
        if self.stop_hangs:
            await asyncio.sleep(3600)
        if self.stop_leaks_cancel:
            # what aiokafka's `Fetcher.close` does with its pending tasks (an offset lookup
            # retrying while the broker is down): cancel one, then await it
            retrying = asyncio.get_running_loop().create_task(asyncio.sleep(3600))
            await asyncio.sleep(0)
            retrying.cancel()
            await retrying
        assert self.consumer is not None
        await self.consumer.stop()
        self.consumer = None

    async def start(self) -> None:
        self.starts += 1
        self.consumer = FakeClient(healthy=True)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _watchdog(subscriber: FakeSubscriber, clock: Clock, **kw: Any) -> ConsumerWatchdog:
    consumer = Consumer(name=f"wd-{id(subscriber)}", topics=["t"], handlers={})
    consumer._subscriber = subscriber
    return ConsumerWatchdog(
        consumer,
        stall_seconds=30.0,
        probe_timeout_seconds=0.05,
        stop_timeout_seconds=0.05,
        clock=clock,
        **kw,
    )


def _restarts(watchdog: ConsumerWatchdog) -> float:
    return metrics.CONSUMER_RESTARTS.labels(watchdog.consumer.name)._value.get()


async def test_a_healthy_client_is_never_restarted() -> None:
    clock = Clock()
    subscriber = FakeSubscriber(FakeClient(healthy=True))
    watchdog = _watchdog(subscriber, clock)
    for _ in range(10):
        assert await watchdog.check() is False
        clock.now += 10
    assert (subscriber.stops, subscriber.starts, _restarts(watchdog)) == (0, 0, 0)


async def test_a_client_failing_for_the_stall_period_is_replaced_once_per_period() -> None:
    clock = Clock()
    broken = FakeClient(healthy=False)
    subscriber = FakeSubscriber(broken)
    watchdog = _watchdog(subscriber, clock)
    outcomes = []
    for _ in range(4):  # t = 0, 10, 20, 30 s of failing probes
        outcomes.append(await watchdog.check())
        clock.now += 10
    assert outcomes == [False, False, False, True]
    assert (subscriber.stops, subscriber.starts, broken.stopped) == (1, 1, True)
    assert subscriber.consumer is not broken and subscriber.consumer is not None
    assert _restarts(watchdog) == 1
    # the new client is healthy: no further restart
    for _ in range(5):
        assert await watchdog.check() is False
        clock.now += 10
    assert subscriber.starts == 1


async def test_a_passing_probe_resets_the_stall_clock() -> None:
    clock = Clock()
    client = FakeClient(healthy=False)
    subscriber = FakeSubscriber(client)
    watchdog = _watchdog(subscriber, clock)
    for healthy in (False, False, False, True, False, False, False):  # never 30 s in a row
        client.healthy = healthy
        assert await watchdog.check() is False
        clock.now += 10
    assert subscriber.starts == 0


async def test_a_wedged_probe_times_out_and_a_hanging_stop_does_not_block_the_restart() -> None:
    clock = Clock()
    wedged = FakeClient(healthy=None, assigned=())  # type: ignore[arg-type]
    subscriber = FakeSubscriber(wedged, stop_hangs=True)
    watchdog = _watchdog(subscriber, clock)
    assert await asyncio.wait_for(watchdog.check(), 1) is False  # probe bounded by its timeout
    clock.now += 30
    assert await asyncio.wait_for(watchdog.check(), 1) is True  # stop bounded too
    assert subscriber.starts == 1
    assert subscriber.consumer is not None and subscriber.consumer is not wedged
    await asyncio.sleep(0)  # the dropped client is stopped in the background
    assert wedged.stopped


async def test_a_stop_ending_in_the_clients_own_cancellation_still_restarts_it() -> None:
    """Seen in `make chaos` (kill-kafka, broker down for a minute): the CancelledError that
    aiokafka's stop lets out was taken for the watchdog's own cancellation, the restart ended
    before the start and the watchdog's job with it, and the service never consumed again."""
    clock = Clock()
    broken = FakeClient(healthy=False)
    subscriber = FakeSubscriber(broken, stop_leaks_cancel=True)
    watchdog = _watchdog(subscriber, clock)
    assert await watchdog.check() is False
    clock.now += 30
    assert await asyncio.wait_for(watchdog.check(), 1) is True
    assert subscriber.starts == 1
    assert subscriber.consumer is not None and subscriber.consumer is not broken
    await asyncio.sleep(0)  # the dropped client is stopped in the background
    assert broken.stopped
    assert await watchdog.check() is False  # the new client passes the probe


async def test_cancelling_the_watchdog_during_a_restart_still_cancels_it() -> None:
    clock = Clock()
    subscriber = FakeSubscriber(FakeClient(healthy=False), stop_hangs=True)
    watchdog = _watchdog(subscriber, clock)
    watchdog.stop_timeout_seconds = 60.0
    assert await watchdog.check() is False
    clock.now += 30
    job = asyncio.get_running_loop().create_task(watchdog.check())
    await asyncio.sleep(0.05)  # inside the hanging stop
    job.cancel()
    with pytest.raises(asyncio.CancelledError):
        await job
    assert subscriber.starts == 0


async def test_a_consumer_that_is_not_attached_is_left_alone() -> None:
    consumer = Consumer(name="not-attached", topics=["t"], handlers={})
    assert await ConsumerWatchdog(consumer, stall_seconds=0).check() is False


def test_the_restart_counter_of_a_watched_consumer_is_exported_at_zero() -> None:
    consumer = Consumer(name="watched-from-the-start", topics=["t"], handlers={})
    ConsumerWatchdog(consumer)
    samples = [
        (sample.labels, sample.value)
        for metric in metrics.CONSUMER_RESTARTS.collect()
        for sample in metric.samples
        if sample.name == "consumer_restarts_total"
    ]
    assert ({"consumer": "watched-from-the-start"}, 0.0) in samples


class TP(NamedTuple):
    topic: str
    partition: int


class ProgressClient(FakeClient):
    """Answers every request; its position and the end offset are set by the test."""

    def __init__(self) -> None:
        super().__init__(healthy=True, assigned=(TP("t", 0),))
        self.end = 10
        self.at = 10

    async def end_offsets(self, partitions: list[Any]) -> dict[Any, int]:
        return dict.fromkeys(partitions, self.end)

    async def position(self, tp: Any) -> int:
        return self.at


async def test_a_consumer_that_answers_but_moves_nothing_while_messages_wait_is_restarted() -> None:
    clock = Clock()
    client = ProgressClient()
    subscriber = FakeSubscriber(client)
    watchdog = _watchdog(subscriber, clock)
    # caught up, idle: nothing waits, nothing moves - healthy
    for _ in range(5):
        assert await watchdog.check() is False
        clock.now += 10
    # messages arrive and are consumed: moving - healthy
    for _ in range(5):
        client.end += 5
        client.at += 5
        assert await watchdog.check() is False
        clock.now += 10
    # messages keep arriving, the position stays: stuck; restarted after 30 s of it
    client.end += 5
    outcomes = []
    for _ in range(5):
        outcomes.append(await watchdog.check())
        client.end += 5
        clock.now += 10
    assert outcomes == [False, False, False, True, False]  # stuck from the first of them
    assert subscriber.starts == 1


class _Fetcher:
    def __init__(self, task: asyncio.Task[Any]) -> None:
        self._fetch_task = task


async def _ended(error: BaseException) -> None:
    raise error


async def test_a_client_whose_fetch_task_has_ended_is_restarted_at_once() -> None:
    """aiokafka's fetch task can end with an error after a broker restart (a write to a
    connection already closed): the client answers metadata, nothing is fetched ever again."""
    clock = Clock()
    client = ProgressClient()  # answers every probe, caught up
    subscriber = FakeSubscriber(client)
    watchdog = _watchdog(subscriber, clock)
    running = asyncio.get_running_loop().create_task(asyncio.sleep(3600))
    client._fetcher = _Fetcher(running)  # type: ignore[attr-defined]
    assert await watchdog.check() is False  # fetching: healthy
    running.cancel()
    dead = asyncio.get_running_loop().create_task(
        _ended(RuntimeError("unable to perform operation on <TCPTransport closed=True>"))
    )
    await asyncio.sleep(0)
    client._fetcher = _Fetcher(dead)  # type: ignore[attr-defined]
    assert await watchdog.check() is True  # the first check, no stall period
    assert (subscriber.stops, subscriber.starts, client.stopped) == (1, 1, True)
    assert subscriber.consumer is not client


class PositionlessClient(ProgressClient):
    """Answers end offsets, but never tells its position."""

    async def position(self, tp: Any) -> int:
        await asyncio.sleep(3600)
        return 0


async def test_a_client_that_cannot_tell_its_position_fails_the_probe() -> None:
    clock = Clock()
    subscriber = FakeSubscriber(PositionlessClient())
    watchdog = _watchdog(subscriber, clock)
    outcomes = []
    for _ in range(4):
        outcomes.append(await watchdog.check())
        clock.now += 10
    assert outcomes == [False, False, False, True]  # replaced after the stall period
    assert subscriber.starts == 1

"""Recovery after kill -9 of a consumer service, under a steady open-loop rate.

The consumer group's lag is read from Kafka itself (committed offsets of the group against the
partitions' end offsets), not from the service's /metrics, which is gone while the process is
dead. Samples are taken every `sample_seconds`; the figures come from `recovery_figures`:

- *resumed*: the first sample after the restart was issued whose committed offsets (summed over
  the group's partitions) are past everything committed before the restart, i.e. the new
  process has consumed, applied and committed its first batch;
- *backlog gone*: the first sample from then on whose lag is back to the steady level, i.e. at
  most the largest lag sampled in the window before the kill (the load never stops, so lag is
  rarely exactly 0; the steady level is what the same rate produced without a fault).

Times are from the kill (the process is gone `killed` s after it) and from the restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


@dataclass(frozen=True)
class Sample:
    at: float  # time.monotonic()
    lag: int
    committed: int


class GroupLag:
    """Lag of one consumer group from the broker: sum over its partitions of end offset minus
    committed offset (partitions without a committed offset yet count from 0)."""

    def __init__(self, bootstrap: str, group: str, topics: list[str]) -> None:
        self.group = group
        self.topics = topics
        self.admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
        self.consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        self.partitions: list[TopicPartition] = []

    async def start(self) -> None:
        await self.admin.start()
        await self.consumer.start()
        for topic in await self.admin.describe_topics(self.topics):
            name = topic.get("topic", topic.get("name"))
            for part in topic.get("partitions", []):
                index = part.get("partition", part.get("partition_index"))
                if isinstance(name, str) and isinstance(index, int):
                    self.partitions.append(TopicPartition(name, index))

    async def sample(self) -> Sample:
        committed = await self.admin.list_consumer_group_offsets(self.group)
        done = {tp: max(0, meta.offset) for tp, meta in committed.items()}
        for tp in done:  # a partition the metadata did not list: the group knows it
            if tp.topic in self.topics and tp not in self.partitions:
                self.partitions.append(tp)
        ends = await self.consumer.end_offsets(self.partitions)
        lag = sum(max(0, end - done.get(tp, 0)) for tp, end in ends.items())
        return Sample(time.monotonic(), lag, sum(done.get(tp, 0) for tp in self.partitions))

    async def close(self) -> None:
        await self.consumer.stop()
        await self.admin.close()


def recovery_figures(
    samples: list[Sample],
    *,
    kill_at: float,
    killed_at: float,
    restart_at: float,
    ready_at: float,
) -> dict[str, Any]:
    """The figures of one kill -9 from the lag samples (see the module docstring)."""
    before = [s for s in samples if s.at < kill_at]
    baseline = max((s.lag for s in before), default=0)
    # nothing commits between the kill and the restart: the highest value seen until the
    # restart is everything the killed process had committed
    ref = max((s.committed for s in samples if s.at < restart_at), default=0)
    after = [s for s in samples if s.at >= kill_at]
    resumed = next((s for s in after if s.at >= restart_at and s.committed > ref), None)
    gone = None
    if resumed is not None:
        gone = next((s for s in after if s.at >= resumed.at and s.lag <= baseline), None)

    def since(t: float | None, origin: float) -> float | None:
        return None if t is None else round(t - origin, 2)

    return {
        "steady_lag_max": baseline,
        "peak_lag": max((s.lag for s in after), default=0),
        "killed_after_s": since(killed_at, kill_at),
        "restart_issued_after_s": since(restart_at, kill_at),
        "ready_after_restart_s": since(ready_at, restart_at),
        "resumed_after_kill_s": since(resumed.at if resumed else None, kill_at),
        "resumed_after_restart_s": since(resumed.at if resumed else None, restart_at),
        "backlog_gone_after_kill_s": since(gone.at if gone else None, kill_at),
        "backlog_gone_after_restart_s": since(gone.at if gone else None, restart_at),
        "samples": len(samples),
    }


async def measure(
    lag: GroupLag,
    *,
    load: Awaitable[Any],
    kill: Callable[[], Awaitable[Any]],
    restart: Callable[[], Awaitable[Any]],
    before_seconds: float,
    down_seconds: float = 0.5,
    sample_seconds: float = 0.25,
) -> tuple[dict[str, Any], Any]:
    """Sample the group's lag while `load` runs; after `before_seconds` call `kill`, wait
    `down_seconds`, call `restart` (returns once the process is ready). Returns the figures and
    what `load` returned; sampling goes on until the load is over."""
    samples: list[Sample] = []
    stop = asyncio.Event()

    async def sampler() -> None:
        while not stop.is_set():
            # a sample lost to a busy broker: take the next one
            with contextlib.suppress(Exception):
                samples.append(await lag.sample())
            await asyncio.sleep(sample_seconds)

    sampling = asyncio.create_task(sampler())
    running = asyncio.ensure_future(load)
    try:
        await asyncio.sleep(before_seconds)
        kill_at = time.monotonic()
        await kill()
        killed_at = time.monotonic()
        await asyncio.sleep(down_seconds)
        restart_at = time.monotonic()
        await restart()
        ready_at = time.monotonic()
        loaded = await running
    finally:
        stop.set()
        await sampling
        if not running.done():
            running.cancel()
    figures = recovery_figures(
        samples, kill_at=kill_at, killed_at=killed_at, restart_at=restart_at, ready_at=ready_at
    )
    return figures, loaded

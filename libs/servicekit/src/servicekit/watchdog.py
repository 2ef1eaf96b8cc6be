"""Restart a Kafka consumer whose client has stopped reaching the broker.

Why: after a broker is killed and restarted, a consumer client can stay cut off from it for
good (the fault harness, `make chaos` kill-kafka, shows it): its consume loop fetches nothing,
every `consumer-lag` refresh times out after 40 s, the same process's producer works fine, and
only a new client brings it back. Nothing is lost (offsets are committed after the effect) but
nothing moves either: every sale answers `202` until the consumer is restarted.

The watchdog probes each consumer's own Kafka client every `consumer_watchdog_seconds` with a
cheap metadata request (ListOffsets of the partitions it holds, or a metadata refresh when it
holds none), bounded by a timeout; the probe also fails when a partition's position cannot be
read in time, or when a partition with messages waiting has not moved since the previous probe
(a consume loop stuck in a fetch or an offset commit while the client still answers metadata,
which a broker kill -9 can also leave behind). When the probe has failed without a break for
`consumer_stall_seconds`, the subscriber is stopped (bounded) and started again with a new
client: the group rebalances, the new member continues from the committed offsets, and the inbox
makes whatever is redelivered a no-op. During a real broker outage every probe fails too, and
while the service's database is down its consumers make no progress either; the restarts then
happen at most once per stall period and cost nothing (the new client keeps trying like the old
one; an uncommitted batch comes again and the inbox skips what was applied). A client whose
fetch task has ended (aiokafka's, after some broker restarts) is restarted at the first check,
without waiting for the stall period. `consumer_restarts_total` counts them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from servicekit import metrics
from servicekit.consumer import Consumer

log = logging.getLogger(__name__)


@dataclass
class ConsumerWatchdog:
    consumer: Consumer
    stall_seconds: float = 30.0
    probe_timeout_seconds: float = 10.0
    stop_timeout_seconds: float = 15.0
    start_timeout_seconds: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _failing_since: float | None = None
    _positions: dict[Any, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # exported at 0 from the start: increase() then sees the first restart, and the alert's
        # metric exists before anything went wrong
        metrics.CONSUMER_RESTARTS.labels(self.consumer.name)

    async def check(self) -> bool:
        """Probe once; restart the subscriber when the probe has failed for `stall_seconds`.
        Returns whether it restarted."""
        subscriber = self.consumer._subscriber
        if subscriber is None:  # not attached (a service without this consumer running)
            return False
        kafka_consumer = getattr(subscriber, "consumer", None)
        ended = _fetch_task_ended(kafka_consumer)
        if ended is not None:
            # nothing will ever fetch again for this client: no point waiting a stall period
            await self.restart(f"its Kafka client's fetch task has ended ({ended})")
            self._failing_since = self.clock()
            return True
        if await self._probe(kafka_consumer):
            self._failing_since = None
            return False
        now = self.clock()
        if self._failing_since is None:
            self._failing_since = now
        if now - self._failing_since < self.stall_seconds:
            return False
        await self.restart(
            f"its Kafka client has failed the probe (broker unreachable or no "
            f"progress with messages waiting) for {now - self._failing_since:.0f}s"
        )
        self._failing_since = self.clock()  # the new client gets a whole period
        return True

    async def _probe(self, kafka_consumer: Any) -> bool:
        """The client answers, and every partition with messages waiting has moved since the
        last probe (a consume loop stuck in a fetch or an offset commit answers metadata
        requests but moves nothing)."""
        if kafka_consumer is None:  # a restart whose start failed: try again
            return False
        try:
            assigned = list(kafka_consumer.assignment())
            if not assigned:
                await asyncio.wait_for(kafka_consumer.topics(), self.probe_timeout_seconds)
                self._positions = {}
                return True
            ends = await asyncio.wait_for(
                kafka_consumer.end_offsets(assigned), self.probe_timeout_seconds
            )
            positions: dict[Any, int] = {}
            for tp in assigned:
                try:
                    positions[tp] = await asyncio.wait_for(
                        kafka_consumer.position(tp), self.probe_timeout_seconds
                    )
                except TimeoutError:
                    raise  # a position the client cannot tell: the probe fails
                except Exception:  # noqa: S112 - revoked meanwhile, no position yet
                    continue
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # KafkaError, the timeout, a closed client
            log.warning(
                "consumer %s: Kafka probe failed (%s: %s)",
                self.consumer.name,
                type(exc).__name__,
                exc,
            )
            return False
        stuck = [
            f"{tp.topic}[{tp.partition}] at {at} of {ends[tp]}"
            for tp, at in positions.items()
            if ends.get(tp) is not None and ends[tp] > at and self._positions.get(tp) == at
        ]
        self._positions = positions
        if stuck:
            log.warning(
                "consumer %s: no progress since the last probe with messages waiting: %s",
                self.consumer.name,
                ", ".join(stuck),
            )
            return False
        return True

    async def restart(self, reason: str) -> None:
        """Stop the subscriber (bounded: a wedged client may never finish leaving the group)
        and start it again with a new Kafka client (bounded too). Never raises but for the
        cancellation of the watchdog itself: a restart that fails is tried again after the next
        stall period (the probe of a subscriber without a client fails)."""
        subscriber = self.consumer._subscriber
        log.error("consumer %s: %s; restarting its subscriber", self.consumer.name, reason)
        metrics.CONSUMER_RESTARTS.labels(self.consumer.name).inc()
        try:
            await asyncio.wait_for(subscriber.stop(), self.stop_timeout_seconds)
        except asyncio.CancelledError:
            if _cancelled_from_outside():
                raise
            # aiokafka's consumer stop (`Fetcher.close`) awaits the tasks it has just cancelled:
            # while the broker is down one of them is an offset lookup retrying, and its
            # CancelledError comes out of `stop()`. Taken for the watchdog's own cancellation it
            # ended the restart before the start and the watchdog's job with it: the subscriber
            # stayed stopped for good (`make chaos`, kill-kafka with the broker down 60 s).
            log.warning(
                "consumer %s: stopping the old subscriber ended in a cancellation of "
                "its client's own tasks; dropping its client",
                self.consumer.name,
            )
            self._drop_client(subscriber)
        except Exception:
            log.exception(
                "consumer %s: the old subscriber did not stop cleanly; dropping its client",
                self.consumer.name,
            )
            self._drop_client(subscriber)
        try:
            await asyncio.wait_for(subscriber.start(), self.start_timeout_seconds)
        except asyncio.CancelledError:
            if _cancelled_from_outside():
                raise
            log.warning(
                "consumer %s: starting the subscriber ended in a cancellation of its "
                "client's own tasks; the next stall period tries again",
                self.consumer.name,
            )
            self._drop_client(subscriber)
        except Exception:  # the broker is really down: the next stall period tries again
            log.exception("consumer %s: restarting the subscriber failed", self.consumer.name)
            self._drop_client(subscriber)

    @staticmethod
    def _drop_client(subscriber: Any) -> None:
        """Forget the subscriber's client and its tasks (the client is stopped in the
        background, never waited for again): the next start builds a new one, and until then
        the probe of a subscriber without a client fails."""
        old = getattr(subscriber, "consumer", None)
        subscriber.consumer = None
        if old is not None:
            task = asyncio.get_running_loop().create_task(old.stop())
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
        for task in getattr(subscriber, "tasks", []):
            task.cancel()
        with contextlib.suppress(AttributeError):
            subscriber.tasks.clear()


def _fetch_task_ended(kafka_consumer: Any) -> str | None:
    """Why the client's fetch task has ended, if it has (else None).

    aiokafka fetches in one background task per client. After a broker restart that task can
    end with an error (seen under `make chaos`, kill-kafka: a write to a connection uvloop had
    already closed, "Unexpected error during data retrieval"), and nothing fetches again: the
    consume loop waits for ever, the client still answers metadata requests, and the error
    only shows when the client is stopped. A client whose private fetcher is not where this
    looks (another aiokafka version) is left to the probe."""
    task = getattr(getattr(kafka_consumer, "_fetcher", None), "_fetch_task", None)
    if not isinstance(task, asyncio.Task) or not task.done():
        return None
    if task.cancelled():
        return "cancelled"
    error = task.exception()
    return "no error" if error is None else f"{type(error).__name__}: {error}"


def _cancelled_from_outside() -> bool:
    """Whether the running task itself was asked to stop (a CancelledError that only passed
    through from a task the client cancelled is not the watchdog's)."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0

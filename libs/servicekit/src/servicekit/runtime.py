"""The process every service runs: an ASGI app whose lifespan starts the whole service.

Start-up: JSON logging, create and migrate the service's database, create the topics, start the
Kafka broker with its consumers, the outbox relay and the periodic jobs. Shutdown (SIGTERM via
uvicorn): stop taking new batches, let the batch in hand finish and commit, stop the relay after
one last round, close the broker and the engine.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import uvicorn
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from faststream.kafka import KafkaBroker
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.topics import ALL_TOPICS, DEAD_LETTERS
from servicekit import metrics
from servicekit.consumer import Consumer
from servicekit.db import SessionFactory, make_engine, make_session_factory, prepare_database
from servicekit.jobs import PeriodicJob
from servicekit.kafkasecurity import broker_security, client_options
from servicekit.logging import configure_logging, correlation_id_var
from servicekit.outbox import OutboxRelay
from servicekit.settings import ServiceSettings
from servicekit.topics import days_to_ms, ensure_topics
from servicekit.watchdog import ConsumerWatchdog

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything a running service holds; routes reach it as `request.app.state.runtime`."""

    settings: ServiceSettings
    engine: AsyncEngine
    session_factory: SessionFactory
    broker: KafkaBroker
    relay: OutboxRelay
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass
class ServiceDefinition:
    """What a service adds to the common runtime."""

    name: str
    settings: ServiceSettings
    migrations_dir: Path
    consumers: Sequence[Consumer] = ()
    jobs: Callable[[Runtime], Sequence[PeriodicJob]] = lambda _rt: ()
    routers: Sequence[APIRouter] = ()
    on_start: Callable[[Runtime], Awaitable[None]] | None = None
    on_stop: Callable[[Runtime], Awaitable[None]] | None = None
    #: the app to build on (the gateway brings its own FastAPI with its public routes)
    app: FastAPI | None = None


def make_broker(settings: ServiceSettings, client_id: str) -> KafkaBroker:
    """The service's Kafka broker. FastStream's own lines for every consumed batch ("Received",
    "Processed") are logged at DEBUG, not INFO: two JSON log lines per batch on the hot path
    said nothing the metrics do not (`LOG_LEVEL=DEBUG` brings them back); its errors stay at
    ERROR."""
    return KafkaBroker(
        settings.kafka_servers,
        security=broker_security(settings),  # TLS / SASL for managed Kafka, or None
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        linger_ms=settings.producer_linger_ms,
        logger=logging.getLogger(f"faststream.{client_id}"),
        log_level=logging.DEBUG,
        graceful_timeout=15.0,
        # no dependency injection into handlers: servicekit's consumer takes FastStream's
        # message as it is (see `servicekit.consumer._the_message_itself`)
        apply_types=False,
    )


def create_app(definition: ServiceDefinition) -> FastAPI:
    settings = definition.settings

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        configure_logging(definition.name, settings.log_level)
        await prepare_database(definition.migrations_dir, settings.database_url)
        engine = make_engine(settings.database_url, pool_size=settings.db_pool_size)
        session_factory = make_session_factory(engine)
        broker = make_broker(settings, definition.name)
        for consumer in definition.consumers:
            consumer.max_records = settings.consumer_batch_size
            consumer.retry_backoff_seconds = settings.consumer_retry_backoff_seconds
            consumer.commit_interval_seconds = settings.consumer_commit_interval_seconds
            consumer.poll_timeout_ms = settings.consumer_poll_timeout_ms
            if not consumer.own_fetch_wait:
                consumer.fetch_wait_ms = settings.consumer_fetch_wait_ms
            consumer.attach(broker, session_factory)
            consumer.keep_connection = True
        await ensure_topics(
            settings.kafka_bootstrap_servers,
            ALL_TOPICS,
            partitions=settings.kafka_topic_partitions,
            client_options=client_options(settings),
            replication_factor=settings.kafka_replication_factor or None,
            min_insync_replicas=settings.kafka_min_insync_replicas or None,
            retention_ms=topic_retention(settings),
        )
        relay = OutboxRelay(
            service=definition.name,
            session_factory=session_factory,
            broker=broker,
            poll_interval=settings.outbox_poll_interval_seconds,
            batch_size=settings.outbox_batch_size,
            keep_sent=timedelta(hours=settings.outbox_keep_sent_hours),
        )
        runtime = Runtime(settings, engine, session_factory, broker, relay)
        app.state.runtime = runtime
        await broker.start()
        tasks = [asyncio.create_task(relay.run(), name="outbox-relay")]
        if definition.on_start:
            await definition.on_start(runtime)
        for job in [*consumer_jobs(definition, settings), *definition.jobs(runtime)]:
            tasks.append(asyncio.create_task(job.run_forever(), name=f"job-{job.name}"))
        log.info("%s started", definition.name)
        try:
            yield
        finally:
            log.info("%s stopping", definition.name)
            # consumers first: the batch in hand finishes and commits (its offsets at once, the
            # processed ones not yet committed now), no new one starts
            for consumer in definition.consumers:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(consumer.stop_committing(), 10)
            await broker.stop()
            for consumer in definition.consumers:
                with contextlib.suppress(Exception):
                    await consumer.release_connection()
            relay.stop()
            for task in tasks:
                if task.get_name() != "outbox-relay":
                    task.cancel()
            # the relay gets a moment to send what the last batches wrote
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)
            if definition.on_stop:
                await definition.on_stop(runtime)
            await engine.dispose()

    app = definition.app or FastAPI(title=definition.name)
    app.router.lifespan_context = lifespan
    install_http_metrics(app)
    app.include_router(health_router())
    for router in definition.routers:
        app.include_router(router)
    return app


def topic_retention(settings: ServiceSettings) -> dict[str, int]:
    """`retention.ms` of every topic from the settings: dead letters theirs, the rest the
    commands' and events'."""
    return {
        topic: days_to_ms(
            settings.kafka_dead_letter_retention_days
            if topic == DEAD_LETTERS
            else settings.kafka_retention_days
        )
        for topic in ALL_TOPICS
    }


def consumer_jobs(definition: ServiceDefinition, settings: ServiceSettings) -> list[PeriodicJob]:
    """Refresh `consumer_lag_messages` of every consumer between batches (see refresh_lag),
    and restart a consumer whose Kafka client stopped reaching the broker (servicekit.watchdog)."""
    if not definition.consumers:
        return []

    async def refresh() -> None:
        for consumer in definition.consumers:
            await consumer.refresh_lag()

    watchdogs = [
        ConsumerWatchdog(consumer, stall_seconds=settings.consumer_stall_seconds)
        for consumer in definition.consumers
    ]

    async def watch() -> None:
        for watchdog in watchdogs:
            await watchdog.check()

    return [
        PeriodicJob("consumer-lag", settings.metrics_interval_seconds, refresh),
        PeriodicJob("consumer-watchdog", settings.consumer_watchdog_seconds, watch),
    ]


def health_router() -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get("/health/live")
    async def live() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/health/ready")
    async def ready(request: Request) -> Response:
        runtime: Runtime | None = getattr(request.app.state, "runtime", None)
        checks: dict[str, str] = {}
        if runtime is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        try:
            async with runtime.engine.connect() as conn:
                await asyncio.wait_for(conn.execute(sa.text("SELECT 1")), 2)
            checks["database"] = "ok"
        except Exception as exc:
            checks["database"] = f"error: {type(exc).__name__}"
        try:
            ok = await runtime.broker.ping(timeout=2.0)
            checks["kafka"] = "ok" if ok else "error: unreachable"
        except Exception as exc:
            checks["kafka"] = f"error: {type(exc).__name__}"
        healthy = all(v == "ok" for v in checks.values())
        return JSONResponse(
            {"status": "ok" if healthy else "unavailable", "checks": checks},
            status_code=200 if healthy else 503,
        )

    @router.get("/metrics")
    async def metrics_endpoint() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return router


def install_http_metrics(app: FastAPI) -> None:
    """Request counts and latency by route template (bounded labels), and a correlation id."""
    app.add_middleware(HttpObserver)


_UNOBSERVED = frozenset(("/metrics", "/health/live", "/health/ready"))


class HttpObserver:
    """`install_http_metrics` as plain ASGI middleware: the correlation id (taken from
    `X-Correlation-Id` or made up) is set for the logs and echoed in the response; the count
    and latency are labelled with the route template. Plain ASGI rather than
    `@app.middleware("http")`: Starlette's `BaseHTTPMiddleware` runs every request through an
    extra task and memory streams, a measurable share of a request's CPU (docs/benchmarks)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cid = ""
        for name, value in scope["headers"]:
            if name == b"x-correlation-id":
                cid = value.decode("latin-1")
                break
        cid = cid or str(uuid.uuid4())
        token = correlation_id_var.set(cid)
        started = time.perf_counter()
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers") or [])
                headers.append((b"x-correlation-id", cid.encode("latin-1")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            if template not in _UNOBSERVED:
                method = scope["method"]
                metrics.HTTP_REQUESTS.labels(method, template, str(status)).inc()
                metrics.HTTP_REQUEST_SECONDS.labels(method, template).observe(
                    time.perf_counter() - started
                )
            correlation_id_var.reset(token)


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    """`python -m <service>`: uvicorn on the settings' host and port, SIGTERM = graceful stop."""
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=20,
        loop="uvloop",
        http="httptools",
        lifespan="on",
    )

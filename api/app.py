"""The FastAPI application of SPEC section 5, wired to whichever mode provides its ports."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI

from availability import ApiKey

from .auth import Authorizer
from .deps import Services
from .errors import install_error_handlers
from .fast_reads import FastReads
from .metrics import ApiMetrics, RequestTimer
from .openapi import install_openapi
from .ports import Feeds, Health, Holds, Ingest, ReadModel, RulesAdmin, Snapshots
from .routes.events import events_router
from .routes.feeds import feeds_router
from .routes.health import health_router
from .routes.holds import holds_router
from .routes.reads import reads_router
from .routes.rules import rules_router
from .routes.snapshots import snapshots_router

VERSION = "0.1.0"


def wall_clock_micros() -> int:
    return time.time_ns() // 1000


def create_app(
    *,
    read: ReadModel,
    ingest: Ingest,
    rules: RulesAdmin,
    health: Health,
    feeds: Feeds | None = None,
    holds: Holds | None = None,
    snapshots: Snapshots | None = None,
    api_keys: Iterable[ApiKey] = (),
    clock_micros: Callable[[], int] = wall_clock_micros,
    lifespan: Callable[[FastAPI], AbstractAsyncContextManager[None]] | None = None,
) -> FastAPI:
    metrics = ApiMetrics(health.oversold_positions)
    services = Services(read, ingest, rules, health, Authorizer(api_keys), metrics, clock_micros)

    @asynccontextmanager
    async def no_lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield

    app = FastAPI(
        title="Availability service",
        version=VERSION,
        description="What can be sold, per SKU, per location, per channel, right now.",
        lifespan=lifespan or no_lifespan,
        # The service's metrics are Prometheus's (api/metrics.py) and it ships no
        # OpenTelemetry SDK, so FastAPI's OpenTelemetry bridge has nowhere to report; left
        # on, it looked for a configured provider on every request, a fifth of what a
        # cached read cost in the app (profiled).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    reads = reads_router(services)
    app.include_router(reads)
    for router in (events_router, rules_router, health_router):
        app.include_router(router(services))
    if feeds is not None:
        app.include_router(feeds_router(services, feeds))
    if holds is not None:
        app.include_router(holds_router(services, holds))
    if snapshots is not None:
        app.include_router(snapshots_router(services, snapshots))
    install_openapi(app)
    # The last added is the outermost: RequestTimer times the fast path's answers too.
    app.add_middleware(FastReads, services=services, routes=reads.routes)
    app.add_middleware(RequestTimer, metrics=metrics)
    app.state.services = services
    return app

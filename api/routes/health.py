"""Liveness, readiness and metrics: open, without keys, for probes and scrapers."""

from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

from ..deps import Services
from ..encoding import json_response
from ..errors import error_response
from ..openapi import errors


def health_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["operations"])

    @router.get("/healthz", summary="The process is alive")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @router.get(
        "/readyz",
        summary="Dependencies reachable and state recovered",
        responses=errors((503, "not_ready: `details` says which check failed")),
    )
    async def readyz() -> Response:
        checks = await services.health.readiness()
        if all(checks.values()):
            return json_response({"ready": True, "checks": checks})
        return error_response(503, "not_ready", "not ready", checks, {"Retry-After": "1"})

    @router.get("/metrics", summary="Prometheus metrics", response_class=Response)
    async def metrics() -> Response:
        return Response(generate_latest(services.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return router

"""Serving an app the way both servers of the `availability` command do."""

from __future__ import annotations

from fastapi import FastAPI

from availability import Settings


def serve_http(app: FastAPI, settings: Settings) -> int:
    """uvicorn on uvloop and httptools, without access logs (a log line a request would
    cost more than the request)."""
    import uvicorn

    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
    return 0

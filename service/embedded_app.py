"""`availability serve`: the embedded engine behind the API, in one process."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import create_app
from availability import Rules, Settings
from availability.memory import settle_garbage_collector
from embedded import EmbeddedEngine


def embedded_app(settings: Settings, rules_at_start: Rules | None = None) -> FastAPI:
    engine = EmbeddedEngine(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine.open(rules_at_start)
        settle_garbage_collector()  # started: see availability/memory.py
        engine.feeds.observer = app.state.services.metrics
        tasks = [
            asyncio.create_task(engine.feeds.run(), name="feed-pump"),
            asyncio.create_task(engine.run_hold_expiry(), name="hold-expiry"),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()  # before the store closes under them
            await asyncio.wait(tasks)
            engine.close()

    return create_app(
        read=engine,
        ingest=engine,
        rules=engine,
        health=engine,
        feeds=engine,
        holds=engine,
        snapshots=engine,
        api_keys=settings.api_keys,
        lifespan=lifespan,
    )

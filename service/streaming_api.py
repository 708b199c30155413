"""`availability api`: the HTTP API of the streaming mode, reading the Redis the workers
publish and writing events and rules to Kafka. Any number of these run side by side."""

from __future__ import annotations

from fastapi import FastAPI

from api import create_app
from api.streaming import StreamingRuntime
from api.streaming.kafka_security import kafka_client_options
from availability import Rules, Settings
from availability.topics import Names

from .http_server import serve_http
from .rules_file import load_rules_file


def streaming_app(settings: Settings, rules_at_start: Rules | None = None) -> FastAPI:
    runtime = StreamingRuntime(
        kafka_bootstrap=settings.kafka_bootstrap,
        redis_url=settings.redis_url,
        kafka_security=kafka_client_options(settings),
        redis_options=settings.redis_options(settings.redis_url),
        answers_redis_url=settings.redis_read_url,
        answers_redis_options=settings.redis_options(settings.redis_read_url),
        names=Names(settings.topic_prefix),
        partitions=settings.partitions,
        replication_factor=settings.replication_factor,
        rules_at_start=rules_at_start,
    )
    return create_app(
        read=runtime.read,
        ingest=runtime.ingest,
        rules=runtime.rules,
        health=runtime.health,
        feeds=runtime.feeds,
        holds=runtime.holds,
        snapshots=runtime.snapshots,
        api_keys=settings.api_keys,
        lifespan=runtime.lifespan,
    )


def run_api(settings: Settings) -> int:
    # An invalid rules file stops the start here (InvalidRules), before anything connects.
    rules = load_rules_file(settings.rules_file) if settings.rules_file else None
    return serve_http(streaming_app(settings, rules), settings)

"""The one settings object of a process. Built from AVAIL_* variables and flags by the entry
point (`service/settings.py`) and passed down; nothing else reads the environment."""

from __future__ import annotations

from msgspec import Struct

from .processing import DEFAULT_WINDOWS, Windows


class ApiKey(Struct, frozen=True):
    key: str
    scopes: frozenset[str]


class Settings(Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 8000
    data_dir: str = "./var"
    rules_file: str | None = None
    api_keys: tuple[ApiKey, ...] = ()
    windows: Windows = DEFAULT_WINDOWS
    sync_writes: bool = False
    cache_skus: int = 100_000
    feed_retention: int = 100_000  # items kept per channel feed, in either mode
    log_level: str = "info"
    kafka_bootstrap: str = "127.0.0.1:9092"
    redis_url: str = "redis://127.0.0.1:6379/0"
    partitions: int = 8
    topic_prefix: str = ""
    app_id: str = "availability"
    standby_replicas: int = 1
    replication_factor: int = 0  # copies of every topic; 0: min(3, brokers)
    metrics_port: int = 9102

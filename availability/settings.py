"""The one settings object of a process. Built from AVAIL_* variables and flags by the entry
point (`service/settings.py`) and passed down; nothing else reads the environment."""

from __future__ import annotations

from typing import Any

from msgspec import Struct

from .processing import DEFAULT_WINDOWS, Windows


class Secret(str):
    """A secret setting: itself where it is used, hidden wherever it is printed."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'***'"


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
    # Kafka security (api/streaming/kafka_security.py): PLAINTEXT, SSL, SASL_PLAINTEXT or
    # SASL_SSL; SASL with PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    kafka_security_protocol: str = "PLAINTEXT"
    kafka_sasl_mechanism: str = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password: Secret | None = None
    kafka_ca_file: str | None = None  # the CA the brokers' certificates are checked with
    kafka_cert_file: str | None = None  # a client certificate, for brokers that ask for one
    kafka_key_file: str | None = None
    kafka_check_hostname: bool = True
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_read_url: str = ""  # where the API reads answers (a replica); "": redis_url
    redis_password: Secret | None = None  # for URLs that carry none
    redis_ca_file: str | None = None  # the CA a rediss:// server's certificate is checked with
    partitions: int = 8
    topic_prefix: str = ""
    app_id: str = "availability"
    standby_replicas: int = 1
    replication_factor: int = 0  # copies of every topic; 0: min(3, brokers)
    metrics_port: int = 9102

    def redis_options(self, url: str) -> dict[str, Any]:
        """What a Redis client of `url` is made with besides the URL itself: the password
        (a URL's own wins) and, over TLS, the CA to check the server with."""
        options: dict[str, Any] = {}
        if self.redis_password is not None:
            options["password"] = str(self.redis_password)
        if url.startswith("rediss://") and self.redis_ca_file:
            options["ssl_ca_certs"] = self.redis_ca_file
        return options

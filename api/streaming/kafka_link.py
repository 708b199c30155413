"""The API process's one Kafka producer, and the only way it sends: every record of a call is
acknowledged by all in-sync replicas within a bounded time, or the call raises NotReady.

The producer is idempotent (a retried batch is written once per partition) and connected in
the background: until it is, sends are refused at once rather than left waiting.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from msgspec import Struct

from availability import NotReady

log = logging.getLogger("availability.api.kafka")

# How long a caller waits for Kafka's acknowledgements before being told to retry: long
# enough for a leader election, short enough for a POS to retry before its own timeout.
ACK_TIMEOUT_S: Final = 10.0
# The producer's own request timeout, under ACK_TIMEOUT_S so its retries end before ours.
REQUEST_TIMEOUT_MS: Final = 8_000
# How long /readyz waits for a metadata round trip.
PROBE_TIMEOUT_S: Final = 2.0
# Events are small; a few milliseconds of lingering batches concurrent requests together.
LINGER_MS: Final = 2


class Record(Struct, frozen=True):
    topic: str
    key: bytes
    value: bytes
    partition: int


class Acked(Struct, frozen=True):
    topic: str
    partition: int
    offset: int


class KafkaLink:
    def __init__(self, bootstrap: str, security: Mapping[str, Any] | None = None) -> None:
        self.bootstrap = bootstrap
        self.security = dict(security or {})  # kafka_security.kafka_client_options
        self._producer: AIOKafkaProducer | None = None

    @property
    def connected(self) -> bool:
        return self._producer is not None

    async def connect(self) -> None:
        """Start the producer; raises KafkaError (and leaves nothing open) when Kafka can't
        be reached. A second call after success does nothing."""
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            **self.security,
            acks="all",
            enable_idempotence=True,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            linger_ms=LINGER_MS,
        )
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer
        log.info("connected to Kafka at %s", self.bootstrap)

    async def close(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            await producer.stop()

    async def reachable(self) -> bool:
        """Whether a metadata round trip to the brokers succeeds now."""
        if self._producer is None:
            return False
        try:
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                return bool(await self._producer.client.force_metadata_update())
        except (TimeoutError, KafkaError):
            return False

    async def send_all(self, records: Sequence[Record], consequence: str) -> list[Acked]:
        """Send every record and wait for all acknowledgements; NotReady otherwise, its
        message saying what went wrong and then `consequence` (what the caller should know)."""
        producer = self._producer
        if producer is None:
            raise NotReady(f"not connected to Kafka at {self.bootstrap} yet; {consequence}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ACK_TIMEOUT_S
        try:
            async with asyncio.timeout_at(deadline):
                futures = [
                    await producer.send(
                        record.topic, record.value, key=record.key, partition=record.partition
                    )
                    for record in records
                ]
        except (TimeoutError, KafkaError) as exc:
            raise NotReady(
                f"Kafka did not take the records ({_reason(exc)}); {consequence}"
            ) from exc
        if not futures:
            return []
        # asyncio.wait, not a timeout around gather: a record Kafka may still write must not
        # have its future cancelled under the producer.
        done, pending = await asyncio.wait(futures, timeout=max(0.0, deadline - loop.time()))
        for future in pending:
            future.add_done_callback(_forget)
        failed = next((f.exception() for f in done if f.exception() is not None), None)
        if pending or failed is not None:
            reason = _reason(failed) if failed else f"no acknowledgement within {ACK_TIMEOUT_S} s"
            raise NotReady(f"Kafka did not acknowledge every record ({reason}); {consequence}")
        return [_acked(future.result()) for future in futures]


def _acked(metadata: Any) -> Acked:
    return Acked(metadata.topic, metadata.partition, metadata.offset)


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _forget(future: asyncio.Future[Any]) -> None:
    """Retrieve a late failure, so asyncio doesn't log it as never retrieved."""
    if not future.cancelled():
        future.exception()

"""The embedded mode: everything in one process, state in RocksDB, no Kafka, no Redis."""

from .engine import EmbeddedEngine
from .store import DeadLetterRecord, RocksStore

__all__ = ["DeadLetterRecord", "EmbeddedEngine", "RocksStore"]

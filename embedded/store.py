"""The embedded mode's RocksDB: an ingest log, checkpointed SKU records, rules, dead letters
and each channel's feed.

Every accepted batch is first appended to the log in one write through RocksDB's WAL, so
once it is acknowledged a killed process loses none of it (with `sync_writes`, neither does
a lost machine). SKU records are written at checkpoints, and the log up to the checkpoint
is dropped in the same atomic write. A SKU touched by a hundred batches between two
checkpoints is written once, not a hundred times: that is most of the ingest rate.

A SKU is stored as the core lays it out (`availability/layout.py`): a head record and
bounded chunk records, under the `SKU_RECORDS` prefix. A write of a SKU stores only its
head and the chunks that changed since its last write, always in one atomic write batch,
so a head is never on disk without its chunks.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

import msgspec
from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from availability import SkuState, answers_state, decode_figures, sku_records, written
from availability.holds import HoldRecord
from availability.layout import HEAD, head_key, read_state
from availability.published import snapshot_digest

SKU_RECORDS: Final = b"s\x00"  # + a layout key: a SKU's head or one of its chunks
_LOG: Final = b"l\x00"
_DEAD_LETTER: Final = b"d\x00"
_RULES_KEY: Final = b"r\x00current"
_CHECKPOINT_KEY: Final = b"m\x00checkpoint"
_FEED: Final = b"f\x00"  # f\0<channel>\0<seq>: the channel's items, oldest first
_PUBLISHED: Final = b"g\x00"  # g\0<channel>\0<sku>: what the feed last said of the SKU
_HOLD: Final = b"h\x00"  # h\0<hold_id>: a hold request and what became of it
_SNAPSHOT: Final = b"n\x00"  # n\0<id digest><seq>: one import's report of a snapshot
_SEQ: Final = struct.Struct(">Q")
_DEAD_LETTER_KEY: Final = struct.Struct(">QI")


class LogEntry(msgspec.Struct, frozen=True):
    now_us: int  # the server time the batch was applied at, so a replay decides alike
    events: list[bytes]  # each event as it arrived


class DeadLetterRecord(msgspec.Struct, frozen=True):
    at: int  # server time, µs
    reason: str
    raw: bytes  # the event as it arrived


class FeedRecord(msgspec.Struct, frozen=True, array_like=True, gc=False):
    sku: str
    sellable: int
    version: int
    at_us: int  # server time the item entered the feed


class Published(msgspec.Struct, frozen=True, array_like=True, gc=False):
    sellable: int
    version: int


_log_encoder: Final = msgspec.msgpack.Encoder()
_log_decoder: Final = msgspec.msgpack.Decoder(LogEntry)
_dead_letter_decoder: Final = msgspec.msgpack.Decoder(DeadLetterRecord)
_feed_decoder: Final = msgspec.msgpack.Decoder(FeedRecord)
_published_decoder: Final = msgspec.msgpack.Decoder(Published)
_hold_decoder: Final = msgspec.msgpack.Decoder(HoldRecord)


def _put_states(batch: WriteBatch, states: Iterable[SkuState]) -> list[SkuState]:
    """Add each state's records of one write to `batch`; returns the states, for
    `_written` once the batch is written (a failed write then loses nothing: the next one
    stores what it did not)."""
    added = []
    for state in states:
        added.append(state)
        for key, value in sku_records(state):
            if value is None:
                batch.delete(SKU_RECORDS + key)  # a chunk emptied since the last write
            else:
                batch.put(SKU_RECORDS + key, value)
    return added


def _written(states: Iterable[SkuState]) -> None:
    for state in states:
        written(state)


def _scan(db: Rdict, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
    """The keys with `prefix` in order, from `start` (a key with that prefix) if given."""
    for key, value in db.items(from_key=start or prefix):
        assert isinstance(key, bytes)
        assert isinstance(value, bytes)
        if not key.startswith(prefix):
            break
        yield key, value


class _SkuRecords:
    """The SKU records under their layout keys, as `layout.read_state` reads them
    (layout.RecordReader)."""

    def __init__(self, db: Rdict) -> None:
        self._db = db

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(SKU_RECORDS + key)
        return value

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key, value in _scan(self._db, SKU_RECORDS + prefix):
            yield key[len(SKU_RECORDS) :], value


def _feed_prefix(channel: str) -> bytes:
    return _FEED + channel.encode() + b"\x00"


def _published_prefix(channel: str) -> bytes:
    return _PUBLISHED + channel.encode() + b"\x00"


class RocksStore:
    def __init__(self, path: str, *, sync_writes: bool = False) -> None:
        os.makedirs(path, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self._db = Rdict(path, options)
        self._write_options = WriteOptions()
        self._write_options.sync = sync_writes
        self._skus = _SkuRecords(self._db)

    def close(self) -> None:
        self._db.close()

    def _scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        return _scan(self._db, prefix, start)

    # -- SKU records -----------------------------------------------------------------------

    def load(self, sku: str) -> SkuState | None:
        """The SKU's whole state (its head and chunks), to change; None for a SKU never
        written."""
        if self._skus.get(head_key(sku)) is None:
            return None
        return read_state(self._skus, sku)  # reads the head again, from RocksDB's cache

    def answer_states(self, after: str | None = None) -> Iterator[SkuState]:
        """Every stored SKU in SKU order, or those after the SKU `after`, read from its head
        alone: read-only states that answer every question (positions, version, holds
        without a location) without reading a chunk."""
        start = None if after is None else SKU_RECORDS + head_key(after) + b"\x00"
        for _, value in self._scan(SKU_RECORDS + HEAD, start):
            yield answers_state(decode_figures(value))

    # -- the ingest log --------------------------------------------------------------------

    def checkpoint_seq(self) -> int:
        data = self._db.get(_CHECKPOINT_KEY)
        return int(_SEQ.unpack(data)[0]) if data is not None else 0

    def append(self, seq: int, entry: LogEntry) -> None:
        self._db.put(_LOG + _SEQ.pack(seq), _log_encoder.encode(entry), self._write_options)

    def log(self) -> Iterator[tuple[int, LogEntry]]:
        for key, value in self._scan(_LOG):
            yield int(_SEQ.unpack(key[len(_LOG) :])[0]), _log_decoder.decode(value)

    def checkpoint(self, seq: int, states: Iterable[SkuState]) -> None:
        """Write the SKUs' records as of log entry `seq` and drop the log up to it,
        atomically."""
        batch = WriteBatch(raw_mode=True)
        stored = _put_states(batch, states)
        batch.put(_CHECKPOINT_KEY, _SEQ.pack(seq))
        batch.delete_range(_LOG, _LOG + _SEQ.pack(seq + 1))
        self._db.write(batch, self._write_options)
        _written(stored)

    # -- dead letters ----------------------------------------------------------------------

    def dead_letter(self, seq: int, records: Sequence[tuple[int, DeadLetterRecord]]) -> None:
        """Keyed by (log entry, index in it), so a replay of the log rewrites, not repeats."""
        batch = WriteBatch(raw_mode=True)
        for index, record in records:
            batch.put(_DEAD_LETTER + _DEAD_LETTER_KEY.pack(seq, index), _log_encoder.encode(record))
        self._db.write(batch, self._write_options)

    def dead_letters(self) -> Iterator[DeadLetterRecord]:
        for _, value in self._scan(_DEAD_LETTER):
            yield _dead_letter_decoder.decode(value)

    # -- snapshot reports ------------------------------------------------------------------

    def add_snapshot_report(self, snapshot_id: str, report: bytes) -> None:
        prefix = _snapshot_prefix(snapshot_id)
        seq = sum(1 for _ in self._scan(prefix))
        self._db.put(prefix + _SEQ.pack(seq), report, self._write_options)

    def snapshot_reports(self, snapshot_id: str) -> list[bytes]:
        """The reports of every import of the snapshot, oldest first."""
        return [bytes(value) for _, value in self._scan(_snapshot_prefix(snapshot_id))]

    # -- rules -----------------------------------------------------------------------------

    def load_rules(self) -> bytes | None:
        data = self._db.get(_RULES_KEY)
        return bytes(data) if data is not None else None

    def save_rules(self, document: bytes, states: Sequence[SkuState]) -> None:
        """Store new rules together with the SKUs whose version they bumped, atomically."""
        batch = WriteBatch(raw_mode=True)
        batch.put(_RULES_KEY, document)
        stored = _put_states(batch, states)
        self._db.write(batch, self._write_options)
        _written(stored)

    # -- channel feeds ---------------------------------------------------------------------

    def append_feed(
        self, channel: str, first_seq: int, items: Sequence[FeedRecord], trim: range
    ) -> None:
        """Append items as `first_seq`, `first_seq + 1`, ..., record each as its SKU's last
        published value, and drop the items whose seq is in `trim`, atomically."""
        feed, published = _feed_prefix(channel), _published_prefix(channel)
        batch = WriteBatch(raw_mode=True)
        for seq, item in enumerate(items, first_seq):
            batch.put(feed + _SEQ.pack(seq), _log_encoder.encode(item))
            batch.put(
                published + item.sku.encode(),
                _log_encoder.encode(Published(item.sellable, item.version)),
            )
        if trim:
            # Only the newly dropped range: one small tombstone per append, not a growing one.
            batch.delete_range(feed + _SEQ.pack(trim.start), feed + _SEQ.pack(trim.stop))
        self._db.write(batch, self._write_options)

    def feed_items(self, channel: str, after: int, limit: int) -> list[tuple[int, FeedRecord]]:
        """Up to `limit` items of the channel after seq `after`, oldest first."""
        feed = _feed_prefix(channel)
        items: list[tuple[int, FeedRecord]] = []
        for key, value in self._scan(feed, feed + _SEQ.pack(after + 1)):
            if len(items) >= limit:
                break
            items.append((int(_SEQ.unpack(key[len(feed) :])[0]), _feed_decoder.decode(value)))
        return items

    def feed_bounds(self, channel: str) -> tuple[int, int] | None:
        """The first and last retained seq of the channel, None when it holds no item."""
        feed = _feed_prefix(channel)
        cursor = self._db.iter()
        cursor.seek(feed)
        if not cursor.valid() or not bytes(cursor.key()).startswith(feed):
            return None
        first = int(_SEQ.unpack(bytes(cursor.key())[len(feed) :])[0])
        cursor.seek_for_prev(feed + b"\xff" * (_SEQ.size + 1))
        last = int(_SEQ.unpack(bytes(cursor.key())[len(feed) :])[0])
        return first, last

    def published(self, channel: str) -> Iterator[tuple[str, Published]]:
        """Every SKU the channel's feed has carried, in SKU order, with its last item."""
        prefix = _published_prefix(channel)
        for key, value in self._scan(prefix):
            yield key[len(prefix) :].decode(), _published_decoder.decode(value)

    def last_published(self, channel: str, sku: str) -> Published | None:
        data = self._db.get(_published_prefix(channel) + sku.encode())
        return _published_decoder.decode(data) if data is not None else None

    # -- checkout holds --------------------------------------------------------------------

    def save_holds(self, states: Iterable[SkuState], records: Iterable[HoldRecord]) -> None:
        """Write the SKUs a hold changed with what became of the hold, atomically: a crash
        keeps a hold whole or not at all. The SKUs may carry events of log entries not yet
        checkpointed; replaying those finds them applied (their event ids), as after any
        checkpoint."""
        batch = WriteBatch(raw_mode=True)
        stored = _put_states(batch, states)
        for record in records:
            batch.put(_HOLD + record.hold_id.encode(), _log_encoder.encode(record))
        self._db.write(batch, self._write_options)
        _written(stored)

    def load_hold(self, hold_id: str) -> HoldRecord | None:
        data = self._db.get(_HOLD + hold_id.encode())
        return _hold_decoder.decode(data) if data is not None else None

    def holds(self) -> Iterator[HoldRecord]:
        for _, value in self._scan(_HOLD):
            yield _hold_decoder.decode(value)

    def forget_holds(self, hold_ids: Iterable[str]) -> None:
        batch = WriteBatch(raw_mode=True)
        for hold_id in hold_ids:
            batch.delete(_HOLD + hold_id.encode())
        self._db.write(batch, self._write_options)


def _snapshot_prefix(snapshot_id: str) -> bytes:
    return _SNAPSHOT + snapshot_digest(snapshot_id)

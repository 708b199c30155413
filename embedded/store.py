"""The embedded mode's RocksDB: an ingest log, checkpointed SKU records, rules, dead letters
and each channel's feed.

Every accepted batch is first appended to the log in one write through RocksDB's WAL, so
once it is acknowledged a killed process loses none of it (with `sync_writes`, neither does
a lost machine). SKU records are written at checkpoints, and the log up to the checkpoint
is dropped in the same atomic write. A SKU touched by a hundred batches between two
checkpoints is encoded once, not a hundred times: that is most of the ingest rate.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Iterator, Sequence
from typing import Final

import msgspec
from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from availability import SkuState, decode_state, encode_state
from availability.holds import HoldRecord

_STATE: Final = b"s\x00"
_LOG: Final = b"l\x00"
_DEAD_LETTER: Final = b"d\x00"
_RULES_KEY: Final = b"r\x00current"
_CHECKPOINT_KEY: Final = b"m\x00checkpoint"
_FEED: Final = b"f\x00"  # f\0<channel>\0<seq>: the channel's items, oldest first
_PUBLISHED: Final = b"g\x00"  # g\0<channel>\0<sku>: what the feed last said of the SKU
_HOLD: Final = b"h\x00"  # h\0<hold_id>: a hold request and what became of it
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

    def close(self) -> None:
        self._db.close()

    def _scan(self, prefix: bytes, start: bytes | None = None) -> Iterator[tuple[bytes, bytes]]:
        """The keys with `prefix` in order, from `start` (a key with that prefix) if given."""
        for key, value in self._db.items(from_key=start or prefix):
            assert isinstance(key, bytes)
            assert isinstance(value, bytes)
            if not key.startswith(prefix):
                break
            yield key, value

    # -- SKU records -----------------------------------------------------------------------

    def load(self, sku: str) -> SkuState | None:
        data = self._db.get(_STATE + sku.encode())
        return decode_state(data) if data is not None else None

    def states(self, after: str | None = None) -> Iterator[SkuState]:
        """Every SKU record in SKU order, or those after the SKU `after`."""
        start = None if after is None else _STATE + after.encode() + b"\x00"
        for _, value in self._scan(_STATE, start):
            yield decode_state(value)

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
        """Write the SKU records as of log entry `seq` and drop the log up to it, atomically."""
        batch = WriteBatch(raw_mode=True)
        for state in states:
            batch.put(_STATE + state.sku.encode(), encode_state(state))
        batch.put(_CHECKPOINT_KEY, _SEQ.pack(seq))
        batch.delete_range(_LOG, _LOG + _SEQ.pack(seq + 1))
        self._db.write(batch, self._write_options)

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

    # -- rules -----------------------------------------------------------------------------

    def load_rules(self) -> bytes | None:
        data = self._db.get(_RULES_KEY)
        return bytes(data) if data is not None else None

    def save_rules(self, document: bytes, states: Sequence[SkuState]) -> None:
        """Store new rules together with the SKUs whose version they bumped, atomically."""
        batch = WriteBatch(raw_mode=True)
        batch.put(_RULES_KEY, document)
        for state in states:
            batch.put(_STATE + state.sku.encode(), encode_state(state))
        self._db.write(batch, self._write_options)

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
        for state in states:
            batch.put(_STATE + state.sku.encode(), encode_state(state))
        for record in records:
            batch.put(_HOLD + record.hold_id.encode(), _log_encoder.encode(record))
        self._db.write(batch, self._write_options)

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

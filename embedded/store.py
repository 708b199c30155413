"""The embedded mode's RocksDB: one record per SKU, the rules, and the dead letters.

Keys are prefixed by kind. Every ingest batch is one atomic WriteBatch through the WAL, so
once a batch is acknowledged a killed process loses none of it (with `sync_writes`, neither
does a lost machine).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator, Sequence
from typing import Final

import msgspec
from rocksdict import Options, Rdict, WriteBatch, WriteOptions

from availability import SkuState, decode_state, encode_state

_STATE: Final = b"s\x00"
_RULES_KEY: Final = b"r\x00current"
_DEAD_LETTER: Final = b"d\x00"
_DEAD_LETTER_SEQ_KEY: Final = b"m\x00dead_letter_seq"


class DeadLetterRecord(msgspec.Struct, frozen=True):
    at: int  # server time, µs
    reason: str
    raw: bytes  # the event as it arrived


_dead_letter_encoder: Final = msgspec.msgpack.Encoder()
_dead_letter_decoder: Final = msgspec.msgpack.Decoder(DeadLetterRecord)


class RocksStore:
    def __init__(self, path: str, *, sync_writes: bool = False) -> None:
        os.makedirs(path, exist_ok=True)
        options = Options(raw_mode=True)
        options.create_if_missing(True)
        self._db = Rdict(path, options)
        self._write_options = WriteOptions()
        self._write_options.sync = sync_writes
        seq = self._db.get(_DEAD_LETTER_SEQ_KEY)
        self._dead_letter_seq = struct.unpack(">Q", seq)[0] if seq else 0

    def close(self) -> None:
        self._db.close()

    def load(self, sku: str) -> SkuState | None:
        data = self._db.get(_STATE + sku.encode())
        return decode_state(data) if data is not None else None

    def _scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._db.items(from_key=prefix):
            assert isinstance(key, bytes)
            assert isinstance(value, bytes)
            if not key.startswith(prefix):
                break
            yield key, value

    def states(self) -> Iterator[SkuState]:
        for _, value in self._scan(_STATE):
            yield decode_state(value)

    def write(
        self, states: Sequence[SkuState], dead_letters: Sequence[DeadLetterRecord] = ()
    ) -> None:
        batch = WriteBatch(raw_mode=True)
        for state in states:
            batch.put(_STATE + state.sku.encode(), encode_state(state))
        seq = self._dead_letter_seq
        for record in dead_letters:
            seq += 1
            batch.put(_DEAD_LETTER + struct.pack(">Q", seq), _dead_letter_encoder.encode(record))
        if dead_letters:
            batch.put(_DEAD_LETTER_SEQ_KEY, struct.pack(">Q", seq))
        self._db.write(batch, self._write_options)
        self._dead_letter_seq = seq

    def dead_letters(self) -> Iterator[tuple[int, DeadLetterRecord]]:
        for key, value in self._scan(_DEAD_LETTER):
            yield (
                struct.unpack(">Q", key[len(_DEAD_LETTER) :])[0],
                _dead_letter_decoder.decode(value),
            )

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

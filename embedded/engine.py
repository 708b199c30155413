"""The embedded engine: the core, a RocksDB store and an in-memory cache in one process.

It is the embedded implementation of the API's ports (read model, ingest, rules, health).
Ingest is synchronous inside the event loop, so a batch is applied and written with no
await in between: no reader ever sees half a batch, and no two batches interleave.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence

from availability import (
    Availability,
    Event,
    Positions,
    Rules,
    Settings,
    SkuState,
    UnknownChannel,
    apply_events,
    availability,
    decode_rules,
    encode_rules,
    positions,
)
from availability.batch import BatchResult
from availability.rules import CompiledRules
from availability.views import reader_fingerprint

from .store import DeadLetterRecord, RocksStore


def wall_clock_micros() -> int:
    return time.time_ns() // 1000


class EmbeddedEngine:
    def __init__(self, settings: Settings, clock: Callable[[], int] = wall_clock_micros) -> None:
        self._settings = settings
        self._clock = clock
        self._store: RocksStore | None = None
        self._cache: OrderedDict[str, SkuState] = OrderedDict()
        self._rules = CompiledRules(Rules())
        self._oversold = 0
        self.ready = False

    # -- lifecycle -------------------------------------------------------------------------

    def open(self, rules_at_start: Rules | None = None) -> None:
        """Open the store, apply `--rules` if given, and count what the gauges need."""
        store = self._store = RocksStore(
            self._settings.data_dir, sync_writes=self._settings.sync_writes
        )
        stored = store.load_rules()
        if stored is not None:
            self._rules = CompiledRules(decode_rules(stored))
        if rules_at_start is not None:
            self._replace_rules(rules_at_start)
        self._oversold = sum(
            position.oversold for state in store.states() for position in state.positions.values()
        )
        self.ready = True

    def close(self) -> None:
        self.ready = False
        if self._store is not None:
            self._store.close()
            self._store = None

    @property
    def store(self) -> RocksStore:
        if self._store is None:
            raise RuntimeError("the engine is not open")
        return self._store

    # -- state -----------------------------------------------------------------------------

    def _cached(self, sku: str) -> SkuState | None:
        state = self._cache.get(sku)
        if state is not None:
            self._cache.move_to_end(sku)
            return state
        state = self.store.load(sku)
        if state is not None:
            self._remember(state)
        return state

    def _remember(self, state: SkuState) -> None:
        self._cache[state.sku] = state
        self._cache.move_to_end(state.sku)
        while len(self._cache) > self._settings.cache_skus:
            self._cache.popitem(last=False)

    def _load_for_write(self, sku: str) -> SkuState:
        return self._cached(sku) or SkuState(sku=sku)

    def _read(self, sku: str) -> SkuState:
        # A SKU never seen answers version 0 and no positions; it is not cached.
        return self._cached(sku) or SkuState(sku=sku)

    # -- read model ------------------------------------------------------------------------

    async def availability(self, sku: str, channel: str, location: str | None) -> Availability:
        compiled = self._rules.channels.get(channel)
        if compiled is None:
            raise UnknownChannel(f"channel {channel!r} is not in the rules")
        return availability(self._read(sku), self._rules, compiled, location)

    async def availability_batch(
        self, skus: Sequence[str], channel: str, location: str | None
    ) -> list[Availability]:
        compiled = self._rules.channels.get(channel)
        if compiled is None:
            raise UnknownChannel(f"channel {channel!r} is not in the rules")
        rules = self._rules
        return [availability(self._read(sku), rules, compiled, location) for sku in skus]

    async def positions(self, sku: str) -> Positions:
        return positions(self._read(sku), self._rules)

    # -- ingest ----------------------------------------------------------------------------

    async def submit(self, events: Sequence[Event], raw: Sequence[bytes]) -> BatchResult:
        now = self._clock()
        result = apply_events(self._load_for_write, events, now, self._settings.windows)
        dead = [
            DeadLetterRecord(now, letter.reason, raw[letter.index])
            for letter in result.dead_letters
        ]
        try:
            self.store.write(list(result.touched.values()), dead)
        except Exception:
            # The cached states were changed in place: forget them so the next read comes
            # from disk, where nothing of this batch landed.
            for sku in result.touched:
                self._cache.pop(sku, None)
            raise
        for state in result.touched.values():
            self._remember(state)
        self._oversold += result.oversold_change
        return result

    # -- rules -----------------------------------------------------------------------------

    async def rules(self) -> Rules:
        return self._rules.rules

    async def replace_rules(self, rules: Rules) -> Rules:
        self._replace_rules(rules)
        return rules

    def _replace_rules(self, rules: Rules) -> None:
        """Swap the rules and bump the version of every SKU whose answers they change."""
        old, new = self._rules, CompiledRules(rules)
        now = self._clock()
        changed: list[SkuState] = []
        for stored in self.store.states():
            state = self._cache.get(stored.sku, stored)
            if reader_fingerprint(state, old) != reader_fingerprint(state, new):
                state.version += 1
                state.updated_at = max(state.updated_at, now)
                changed.append(state)
        self.store.save_rules(encode_rules(rules), changed)
        self._rules = new
        for state in changed:
            if state.sku in self._cache:
                self._cache[state.sku] = state

    # -- health ----------------------------------------------------------------------------

    async def readiness(self) -> dict[str, bool]:
        return {"state": self.ready}

    def oversold_positions(self) -> int:
        return self._oversold

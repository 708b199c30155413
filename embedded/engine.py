"""The embedded engine: the core, a RocksDB store and in-memory SKU states in one process.

It is the embedded implementation of the API's ports (read model, ingest, rules, health).

Ingest appends the batch to the log (durable), then applies it in memory, with no await in
between: no reader sees half a batch and no two batches interleave. Changed SKUs stay in
memory, dirty, until a checkpoint writes them and drops the log behind them. On start the
log left after the last checkpoint is replayed; replaying an event already in a
checkpointed SKU is a duplicate by its event_id, so a replay never counts twice.

A SKU's state in memory is whole (its head and every chunk, `availability/layout.py`), and
it knows which of its chunks changed since it was last written: a write stores only those.
So each SKU has one state object in memory, the one every write of it comes from, kept
after the write (a state loaded afresh would not know what the last one left unwritten).

Each applied batch, and each rules change, offers the SKUs it touched to the channel feeds
(`feeds.py`); their pump is a task the entry point runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Final, TypeAlias

import msgspec
from msgspec import Raw

from availability import (
    Event,
    Positions,
    Rules,
    Settings,
    SkuState,
    UnknownChannel,
    apply_events,
    availability,
    decode_event,
    decode_rules,
    encode_rules,
    positions,
)
from availability.batch import BatchResult
from availability.errors import UnknownHold
from availability.feeds import FeedPage, SnapshotPage
from availability.holds import (
    HoldRecord,
    HoldRequest,
    HoldStatus,
    commit_hold,
    expires_at,
    place_hold,
    release_hold,
)
from availability.rules import CompiledChannel, CompiledRules
from availability.snapshot_reports import ReportTally, SnapshotReport, applied_reports
from availability.snapshots import unlisted_zero_counts
from availability.timeutil import MICROS_PER_SECOND
from availability.views import LocationsAsk, bump_if_rules_move_answers, reader_fingerprint

from .feeds import EmbeddedFeeds
from .store import DeadLetterRecord, LogEntry, RocksStore

# A checkpoint writes every dirty SKU in one go, pausing the loop for roughly 15 µs per SKU:
# these bounds keep that pause short while still writing a busy SKU once per many batches.
CHECKPOINT_DIRTY_SKUS: Final = 50_000
CHECKPOINT_SECONDS: Final = 5.0
MAX_ZERO_BATCH: Final = 1000  # a full snapshot's zero counts go through submit, as events do
# A hold's first answer is given again to a repeated request for this long after the hold
# ended (expired, released or committed); then its id is forgotten.
HOLD_MEMORY_US: Final = 24 * 3600 * MICROS_PER_SECOND
HOLD_SWEEP_US: Final = 3600 * MICROS_PER_SECOND  # how often the ended holds are looked over
EXPIRY_IDLE_S: Final = 1.0  # with no hold due sooner, how long the expiry task sleeps

_encoder: Final = msgspec.json.Encoder()
# An answer as JSON, with the SKU version and the rules it was computed from.
_KnownAnswer: TypeAlias = tuple[int, CompiledRules, Raw]


def wall_clock_micros() -> int:
    return time.time_ns() // 1000


class EmbeddedEngine:
    def __init__(self, settings: Settings, clock: Callable[[], int] = wall_clock_micros) -> None:
        self._settings = settings
        self._clock = clock
        self._store: RocksStore | None = None
        self._feeds: EmbeddedFeeds | None = None
        self._cache: OrderedDict[str, SkuState] = OrderedDict()  # clean, least recent first
        self._dirty: dict[str, SkuState] = {}  # changed since the last checkpoint
        self._seq = 0  # the last log entry applied
        self._last_checkpoint = time.monotonic()
        self._rules = CompiledRules(Rules())
        # Answers already computed, by (channel, location) then SKU, with the SKU version and
        # rules they were computed from: storefronts ask for the same hot SKUs again and
        # again. Profiled, a 100-SKU batch was mostly encoding answers and looking them up:
        # they are kept as JSON, sent as it is (ports.AvailabilityAnswer), and a batch asks
        # one channel and location, so its SKUs are found by SKU alone.
        self._answers: dict[tuple[str, str | None], dict[str, _KnownAnswer]] = {}
        self._answers_count = 0
        self._oversold = 0
        self._expiries: list[tuple[int, str]] = []  # (expires_at, hold_id) of live holds
        self._expiry_changed = asyncio.Event()
        self._holds_swept_at = 0
        self.ready = False

    # -- lifecycle -------------------------------------------------------------------------

    def open(self, rules_at_start: Rules | None = None) -> None:
        """Open the store, replay the log, re-offer what the feeds lost, apply `--rules` if
        given, count what gauges need."""
        store = self._store = RocksStore(
            self._settings.data_dir, sync_writes=self._settings.sync_writes
        )
        stored = store.load_rules()
        if stored is not None:
            self._rules = CompiledRules(decode_rules(stored))
        feeds = self._feeds = EmbeddedFeeds(store, self._settings.feed_retention, self._clock)
        feeds.configure(self._rules)
        self._seq = store.checkpoint_seq()
        for seq, entry in store.log():
            self._apply(
                [decode_event(raw) for raw in entry.events], entry.events, seq, entry.now_us
            )
        self.checkpoint()
        # After the replay, so the feeds compare every SKU as it is now; before new rules,
        # whose change re-offers what it moves.
        feeds.recover(store.answer_states(), self._rules)
        if rules_at_start is not None:
            self._replace_rules(rules_at_start)
        self._oversold = sum(
            position.oversold
            for state in store.answer_states()
            for position in state.positions.values()
        )
        self._load_holds()
        self.ready = True

    def close(self) -> None:
        self.ready = False
        if self._store is not None:
            self.checkpoint()
            self._store.close()
            self._store = None
            self._feeds = None

    @property
    def store(self) -> RocksStore:
        if self._store is None:
            raise RuntimeError("the engine is not open")
        return self._store

    @property
    def feeds(self) -> EmbeddedFeeds:
        """The channel feeds; the entry point runs `feeds.run()` as a task while open."""
        if self._feeds is None:
            raise RuntimeError("the engine is not open")
        return self._feeds

    def checkpoint(self) -> None:
        self.store.checkpoint(self._seq, self._dirty.values())
        for state in self._dirty.values():
            self._remember(state)  # written: from now on its writes start from here
        self._dirty.clear()
        self._last_checkpoint = time.monotonic()

    # -- state -----------------------------------------------------------------------------

    def _find(self, sku: str) -> SkuState | None:
        state = self._dirty.get(sku)
        if state is not None:
            return state
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
        state = self._find(sku) or SkuState(sku=sku)
        self._dirty[sku] = state
        return state

    def _read(self, sku: str) -> SkuState:
        # A SKU never seen answers version 0 and no positions; it is not remembered.
        return self._find(sku) or SkuState(sku=sku)

    # -- read model ------------------------------------------------------------------------

    def _channel(self, name: str) -> CompiledChannel:
        compiled = self._rules.channels.get(name)
        if compiled is None:
            raise UnknownChannel(f"channel {name!r} is not in the rules")
        return compiled

    async def availability(
        self, sku: str, channel: str, location: str | None, ask: LocationsAsk | None = None
    ) -> Raw:
        [answer] = await self.availability_batch([sku], channel, location, ask)
        return answer

    async def availability_batch(
        self,
        skus: Sequence[str],
        channel: str,
        location: str | None,
        ask: LocationsAsk | None = None,
    ) -> list[Raw]:
        compiled, rules = self._channel(channel), self._rules
        if ask is not None and location is None:
            # A page of a breakdown is asked for rarely and in many shapes: not kept.
            return [
                Raw(_encoder.encode(availability(self._read(sku), rules, compiled, None, ask)))
                for sku in skus
            ]
        if self._answers_count >= 2 * self._settings.cache_skus:
            self._answers.clear()
            self._answers_count = 0
        known = self._answers.setdefault((channel, location), {})
        answers = []
        for sku in skus:
            # As `_read`, but a cached state keeps its place in the LRU order: in the same
            # profile, moving it cost more than the rest of the read. A SKU read but not
            # written leaves the cache after `cache_skus` others; a store read brings it back.
            state = self._dirty.get(sku) or self._cache.get(sku) or self._read(sku)
            answer = known.get(sku)
            if answer is None or answer[0] != state.version or answer[1] is not rules:
                if answer is None:
                    self._answers_count += 1
                encoded = Raw(_encoder.encode(availability(state, rules, compiled, location)))
                answer = known[sku] = (state.version, rules, encoded)
            answers.append(answer[2])
        return answers

    async def positions(self, sku: str) -> Positions:
        return positions(self._read(sku), self._rules)

    # -- ingest ----------------------------------------------------------------------------

    async def submit(self, events: Sequence[Event], raw: Sequence[bytes]) -> BatchResult:
        now = self._clock()
        seq = self._seq + 1
        self.store.append(seq, LogEntry(now, list(raw)))  # durable before anything changes
        result = self._apply(events, raw, seq, now)
        self.feeds.changed(result.touched.values(), self._rules)
        if (
            len(self._dirty) >= CHECKPOINT_DIRTY_SKUS
            or time.monotonic() - self._last_checkpoint >= CHECKPOINT_SECONDS
        ):
            self.checkpoint()
        return result

    def _apply(
        self, events: Sequence[Event], raw: Sequence[bytes], seq: int, now: int
    ) -> BatchResult:
        result = apply_events(self._load_for_write, events, now, self._settings.windows)
        self._seq = seq
        if result.dead_letters:
            self.store.dead_letter(
                seq,
                [
                    (d.index, DeadLetterRecord(now, d.reason, raw[d.index]))
                    for d in result.dead_letters
                ],
            )
        self._oversold += result.oversold_change
        return result

    # -- snapshot reports --------------------------------------------------------------

    async def add_snapshot_report(self, snapshot_id: str, report: bytes) -> None:
        self.store.add_snapshot_report(snapshot_id, report)

    async def snapshot_reports(self, snapshot_id: str) -> list[bytes]:
        return self.store.snapshot_reports(snapshot_id)

    async def zero_unlisted(self, snapshot_id: str, locations: Mapping[str, int]) -> SnapshotReport:
        self.checkpoint()  # every SKU is now on disk, so one scan of the heads sees them all
        tally = ReportTally(snapshot_id, None)
        tally.zeroed = 0
        batch: list[Event] = []
        for stored in self.store.answer_states():
            batch += unlisted_zero_counts(snapshot_id, stored.sku, stored.positions, locations)
            if len(batch) >= MAX_ZERO_BATCH:
                await self._take_zero_counts(batch, tally)
                batch = []
        await self._take_zero_counts(batch, tally)
        return tally.report()

    async def _take_zero_counts(self, counts: list[Event], tally: ReportTally) -> None:
        if counts:
            result = await self.submit(counts, [msgspec.json.encode(c) for c in counts])
            for report in applied_reports(counts, result):
                tally.absorb(report)

    # -- rules -----------------------------------------------------------------------------

    async def rules(self) -> Rules:
        return self._rules.rules

    async def replace_rules(self, rules: Rules) -> Rules:
        self._replace_rules(rules)
        return rules

    def _replace_rules(self, rules: Rules) -> None:
        """Swap the rules and bump the version of every SKU whose answers they change."""
        self.checkpoint()  # every SKU is now on disk, so one scan of the heads sees them all
        old, new = self._rules, CompiledRules(rules)
        now = self._clock()
        changed: list[SkuState] = []
        for stored in self.store.answer_states():
            # The head decides (answers depend on positions alone); only a SKU to bump is
            # read whole, or taken from memory, where after the checkpoint it is clean.
            if reader_fingerprint(stored, old) == reader_fingerprint(stored, new):
                continue
            state = self._cache.get(stored.sku) or self.store.load(stored.sku)
            assert state is not None, "its head was just read"
            bump_if_rules_move_answers(state, old, new, now)
            changed.append(state)
        self.store.save_rules(encode_rules(rules), changed)
        self._rules = new
        if self.feeds.configure(new):
            # A new feed starts from nothing: every SKU goes to the feeds, whose comparison
            # with what each feed last said picks what to offer. The store has every SKU.
            self.feeds.changed(self.store.answer_states(), new)
        else:
            self.feeds.changed(changed, new)

    # -- feeds -----------------------------------------------------------------------------

    async def feed(self, channel: str, cursor: str | None, limit: int, wait_ms: int) -> FeedPage:
        return await self.feeds.read(channel, cursor, limit, wait_ms)

    async def feed_snapshot(self, channel: str, page_token: str | None, limit: int) -> SnapshotPage:
        if self._dirty:
            self.checkpoint()  # the snapshot reads SKU records: make them current
        return self.feeds.snapshot(channel, page_token, limit)

    # -- checkout holds --------------------------------------------------------------------
    # Each operation runs with no await between its decision and its write: storefronts
    # racing for the last units are decided one after the other, and none is oversold.

    async def place_hold(self, request: HoldRequest) -> HoldRecord:
        channel = self._channel(request.channel)
        hold_id = request.hold_id or uuid.uuid4().hex
        known = self.store.load_hold(hold_id)
        if known is not None:
            return known  # a repeated request gets its first answer and holds nothing more
        now = self._clock()
        self._expire_due(now)  # a hold whose time is up must not keep its units
        touched: dict[str, SkuState] = {}

        def load(sku: str) -> SkuState:
            state = touched[sku] = self._load_for_write(sku)
            return state

        deadline = expires_at(request, now)
        short = place_hold(load, hold_id, channel, self._rules, request.lines, deadline, now)
        status = HoldStatus.REFUSED if short else HoldStatus.HELD
        record = HoldRecord(hold_id, channel.name, status, deadline, request.lines, short)
        self.store.save_holds([] if short else touched.values(), [record])
        if not short:
            heapq.heappush(self._expiries, (deadline, hold_id))
            self._expiry_changed.set()
            self.feeds.changed(touched.values(), self._rules)
        return record

    async def release_hold(self, hold_id: str) -> HoldRecord:
        now = self._clock()
        record = self._live_hold(hold_id, now)
        self._give_back(record, HoldStatus.RELEASED, now)
        return record

    async def commit_hold(self, hold_id: str, order_id: str | None) -> HoldRecord:
        now = self._clock()
        known = self.store.load_hold(hold_id)
        if known is not None and known.status is HoldStatus.COMMITTED:
            return known  # committing again answers as the first time
        record = self._live_hold(hold_id, now)
        record.order_id = order_id or hold_id
        channel = self._rules.channels.get(record.channel)
        states = [self._load_for_write(sku) for sku in record.skus()]
        for state in states:
            committed = commit_hold(state, hold_id, record.order_id, self._rules, channel, now)
            record.committed += committed or []
        record.status = HoldStatus.COMMITTED
        self.store.save_holds(states, [record])
        self.feeds.changed(states, self._rules)
        return record

    def _live_hold(self, hold_id: str, now: int) -> HoldRecord:
        record = self.store.load_hold(hold_id)
        if record is not None and record.status is HoldStatus.HELD and record.expires_at <= now:
            self._expire_due(now)
            record = self.store.load_hold(hold_id)
        if record is None:
            raise UnknownHold(f"no hold {hold_id!r}")
        if record.status is not HoldStatus.HELD:
            raise UnknownHold(f"hold {hold_id!r} holds nothing any more: it was {record.status}")
        return record

    def _expire_due(self, now: int) -> int:
        """Release every live hold whose time is up; returns how many."""
        expired = 0
        while self._expiries and self._expiries[0][0] <= now:
            _, hold_id = heapq.heappop(self._expiries)
            record = self.store.load_hold(hold_id)
            if record is None or record.status is not HoldStatus.HELD:
                continue  # released or committed before its time
            self._give_back(record, HoldStatus.EXPIRED, now)
            expired += 1
        return expired

    def _give_back(self, record: HoldRecord, status: HoldStatus, now: int) -> None:
        """End a live hold by giving its units back on every SKU (released or expired)."""
        states = [self._load_for_write(sku) for sku in record.skus()]
        for state in states:
            release_hold(state, record.hold_id, now)
        record.status = status
        self.store.save_holds(states, [record])
        self.feeds.changed(states, self._rules)

    def _load_holds(self) -> None:
        """At open: the live holds' expiry times."""
        self._expiries = [
            (record.expires_at, record.hold_id)
            for record in self.store.holds()
            if record.status is HoldStatus.HELD
        ]
        heapq.heapify(self._expiries)
        self._forget_ended_holds(self._clock())

    def _forget_ended_holds(self, now: int) -> None:
        """Forget the ids of holds that ended over HOLD_MEMORY_US ago: one scan of the
        records, at open and then hourly."""
        self.store.forget_holds(
            record.hold_id
            for record in self.store.holds()
            if record.status is not HoldStatus.HELD and record.expires_at + HOLD_MEMORY_US < now
        )
        self._holds_swept_at = now

    async def run_hold_expiry(self) -> None:
        """Expire holds at their time even when nothing else happens; the entry point runs
        this as a task while the engine is open."""
        while True:
            now = self._clock()
            self._expire_due(now)
            if now - self._holds_swept_at >= HOLD_SWEEP_US:
                self._forget_ended_holds(now)
            wait = EXPIRY_IDLE_S
            if self._expiries:
                wait = min(wait, max(0.0, (self._expiries[0][0] - now) / MICROS_PER_SECOND))
            self._expiry_changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._expiry_changed.wait(), timeout=max(wait, 0.001))

    # -- health ----------------------------------------------------------------------------

    async def readiness(self) -> dict[str, bool]:
        return {"state": self.ready}

    def oversold_positions(self) -> int:
        return self._oversold

    def dead_letters(self) -> list[DeadLetterRecord]:
        return list(self.store.dead_letters())

"""One partition's share of a batch: decode, dead-letter, apply, write the table.

The worker is the single writer of every SKU of its partitions. Faust commits offsets
apart from table writes, so a crash redelivers; a SKU's dedup ids are written in the same
group of records as its positions (availability/layout.py), stored whole or not at all, so
a redelivered event is a duplicate and state is effectively once on at-least-once delivery.
"""

from __future__ import annotations

import heapq
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Protocol

import msgspec

from availability import SkuState, Windows, apply_events
from availability.batch import BatchResult
from availability.control import (
    HOLD_CLOCK_TOLERANCE_S,
    CommitHold,
    ExpireHolds,
    ExtendHold,
    HoldCommand,
    HoldReply,
    PlaceHold,
    ReleaseHold,
    RulesChanged,
    control_decoder,
    reply_list,
    reply_to_error,
)
from availability.decoding import decoded
from availability.events import Count, Event, clock_error, decode_message
from availability.holds import (
    Shortfall,
    commit_hold,
    committed_before,
    expire_holds,
    extend_hold,
    place_hold,
    release_hold,
)
from availability.layout import (
    HEAD,
    HeadFigures,
    RecordReader,
    decode_figures,
    decode_head,
    load_state,
    read_state,
    sku_of_head,
    sku_records,
    written,
)
from availability.published import snapshot_key
from availability.rules import CompiledRules, Rules
from availability.snapshot_reports import applied_reports, report_encoder
from availability.snapshots import (
    SNAPSHOT_END_KEY,
    SnapshotEnd,
    snapshot_end_decoder,
    unlisted_zero_counts,
)
from availability.timeutil import MICROS_PER_SECOND
from availability.topics import Names
from availability.views import bump_if_rules_move_answers

from .ports import DeadLetters, StateTable
from .state_cache import StateCache

# Per-partition records that are not SKUs start with a byte no SKU record key starts with.
log = logging.getLogger("availability.worker")

RULES_KEY: Final = b"\x00rules"
# A SKU's events applied before its state is written: a bestseller's batch is written in
# pieces, so that one write (its head, new chunks and the older chunks whose documents
# those events changed) stays well inside one Kafka record batch.
MAX_EVENTS_PER_WRITE: Final = 64
# A full snapshot's zero counts, applied so many at a time, as a fetch's events would be.
ZERO_RUN: Final = 1000


class Record(Protocol):
    """A consumed record, as the processor reads it (aiokafka's ConsumerRecord is one)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True)
class Message:
    """A record made by hand (tests, tools)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class PartitionRules(msgspec.Struct, frozen=True):
    """The rules a partition's SKU versions were last brought in line with."""

    revision: int
    rules: Rules


_partition_rules_decoder: Final = msgspec.msgpack.Decoder(PartitionRules)
_partition_rules_encoder: Final = msgspec.msgpack.Encoder()


class RulesHolder:
    """The newest rules this worker has seen, from the rules topic or a control message."""

    def __init__(self) -> None:
        self.revision = -1
        self.compiled = CompiledRules(Rules())

    def offer(self, revision: int, rules: Rules) -> bool:
        if revision <= self.revision:
            return False
        self.revision, self.compiled = revision, CompiledRules(rules)
        return True


@dataclass
class PartitionOutcome:
    # SKU -> its head record as written, to publish. Encoded, not the state itself: the
    # next batch may apply its events to that state in place (StateCache).
    changed: dict[str, bytes] = field(default_factory=dict)
    results: list[BatchResult] = field(default_factory=list)  # for metrics
    invalid: int = 0
    replies: list[tuple[str, bytes]] = field(default_factory=list)  # (Redis list, reply)
    # (Redis list, report): what the batch's counts did to each ERP snapshot they belong to
    reports: list[tuple[str, bytes]] = field(default_factory=list)


_reply_encoder: Final = msgspec.json.Encoder()


class Processor:
    def __init__(
        self,
        names: Names,
        partitions: int,
        table: StateTable,
        dead_letters: DeadLetters,
        rules: RulesHolder,
        windows: Windows,
        clock_micros: Callable[[], int],
        cache_skus: int = 0,
    ) -> None:
        self.names = names
        self.partitions = partitions
        self.table = table
        self.dead_letters = dead_letters
        self.rules = rules
        self.windows = windows
        self.clock_micros = clock_micros
        self._control_topic = names.control_topic
        self.cache = StateCache(cache_skus)
        # Per partition, (expires_at, sku, hold_id) of the holds placed or taken over here:
        # what tells the worker to send itself an ExpireHolds when one is due.
        self.hold_expiries: dict[int, list[tuple[int, str, str]]] = {}

    def handle_partition(self, partition: int, messages: Sequence[Record]) -> PartitionOutcome:
        """Apply one partition's messages in order. Must run in that partition's context."""
        outcome = PartitionOutcome()
        now = self.clock_micros()
        run: list[tuple[Record, Event]] = []
        per_sku: dict[str, int] = {}
        for message in messages:
            if message.topic == self._control_topic or message.key == SNAPSHOT_END_KEY:
                self._apply_run(run, now, outcome)
                run, per_sku = [], {}
                if message.topic == self._control_topic:
                    self._control(partition, message, now, outcome)
                else:
                    self._snapshot_end(partition, message, now, outcome)
                continue
            event = self._decode(message, now)
            if event is None:
                outcome.invalid += 1
                continue
            if per_sku.get(event.sku, 0) >= MAX_EVENTS_PER_WRITE:
                self._apply_run(run, now, outcome)
                run, per_sku = [], {}
            per_sku[event.sku] = per_sku.get(event.sku, 0) + 1
            run.append((message, event))
        self._apply_run(run, now, outcome)
        return outcome

    def _decode(self, message: Record, now: int) -> Event | None:
        event, reason = decode_message(message.value)
        if event is not None:
            reason = clock_error(event, now)
            if reason is None and message.key != event.sku.encode():
                # Keyed otherwise, the event could sit on a partition that does not own
                # its SKU, and two writers would split one SKU's state.
                reason = f"the message key must be the event's sku {event.sku!r}"
        if reason is not None:
            self._dead_letter(message, reason)
            return None
        return event

    def _dead_letter(self, message: Record, reason: str) -> None:
        self.dead_letters.send(
            message.value, message.key, reason, message.topic, message.partition, message.offset
        )

    def _load(self, sku: str) -> SkuState:
        """The SKU's state, to change in place: events and holds write every state they
        change, and a refused hold gives back exactly what it took (its lines went to the
        open chunk and leave it as they came), so the cached state stays the table's."""
        cached = self.cache.get(sku)
        return cached if cached is not None else read_state(self.table, sku)

    def _apply_run(
        self, run: list[tuple[Record, Event]], now: int, outcome: PartitionOutcome
    ) -> None:
        if not run:
            return
        events = [event for _, event in run]
        result = apply_events(self._load, events, now, self.windows)
        for letter in result.dead_letters:
            message = run[letter.index][0]
            self._dead_letter(message, letter.reason)
        for state in result.touched.values():
            self._write(state, outcome)
        outcome.results.append(result)
        if result.count_outcomes:
            namespace = self.names.redis_namespace
            outcome.reports += [
                (snapshot_key(namespace, report.snapshot_id), report_encoder.encode(report))
                for report in applied_reports(events, result)
            ]

    def _control(
        self, partition: int, message: Record, now: int, outcome: PartitionOutcome
    ) -> None:
        try:
            control = decoded(control_decoder, message.value or b"")
        except msgspec.MsgspecError as exc:
            self._dead_letter(message, f"invalid control message: {exc}")
            return
        if isinstance(control, RulesChanged):
            self._rules_changed(partition, control, now, outcome)
        elif isinstance(control, ExpireHolds):
            self._expire_due(partition, now, outcome)
        else:
            # A reply to a key outside the API's reply lists: refused whole, unapplied.
            refused = reply_to_error(self.names.redis_namespace, control)
            if refused is not None:
                self._dead_letter(message, f"invalid control message: {refused}")
                return
            reply = self._hold_command(partition, control, now, outcome)
            reply = msgspec.structs.replace(reply, request_id=control.request_id)
            key = reply_list(self.names.redis_namespace, control)
            outcome.replies.append((key, _reply_encoder.encode(reply)))

    def _snapshot_end(
        self, partition: int, message: Record, now: int, outcome: PartitionOutcome
    ) -> None:
        """A `full` snapshot's end, after its rows on this partition: count as 0 every
        position of its locations it did not list (availability/snapshots.py)."""
        try:
            end = decoded(snapshot_end_decoder, message.value or b"")
        except msgspec.MsgspecError as exc:
            self._dead_letter(message, f"invalid snapshot end: {exc}")
            return
        zeros = [
            count
            for _, value in list(self.table.partition_items(partition, HEAD))
            for count in _unlisted(end, decode_figures(value))
        ]
        run: list[tuple[Record, Event]] = []
        per_sku: dict[str, int] = {}
        for count in zeros:
            if len(run) >= ZERO_RUN or per_sku.get(count.sku, 0) >= MAX_EVENTS_PER_WRITE:
                self._apply_run(run, now, outcome)
                run, per_sku = [], {}
            per_sku[count.sku] = per_sku.get(count.sku, 0) + 1
            run.append((message, count))
        self._apply_run(run, now, outcome)

    def remember_holds(self, partition: int, reader: RecordReader) -> None:
        """A partition taken over: the expiry times of the holds its SKUs carry (the heads
        say which SKUs carry any)."""
        due = self.hold_expiries.setdefault(partition, [])
        for key, value in reader.scan(HEAD):
            if decode_figures(value).holds:
                state = read_state(reader, sku_of_head(key))
                for hold_id, hold in state.holds.items():
                    heapq.heappush(due, (hold.expires_at, state.sku, hold_id))

    def next_hold_due(self, partition: int) -> int | None:
        due = self.hold_expiries.get(partition)
        return due[0][0] if due else None

    def _write(self, state: SkuState, outcome: PartitionOutcome, *, cache: bool = True) -> None:
        records = sku_records(state)
        self.table.write(records)
        # Written as far as the state is concerned: a batch whose table write fails
        # throws its states away (the cache is emptied), so none keeps a wrong book.
        written(state)
        head = records[-1][1]
        assert head is not None, "a SKU's records end with its head"
        outcome.changed[state.sku] = head
        if cache:
            self.cache.written(state)

    def _hold_command(
        self, partition: int, command: HoldCommand, now: int, outcome: PartitionOutcome
    ) -> HoldReply:
        """Apply one hold command to this partition's SKUs; every one is idempotent, so a
        command redelivered after a crash changes nothing more and answers alike."""
        due = self.hold_expiries.setdefault(partition, [])
        if isinstance(command, PlaceHold):
            loaded: dict[str, SkuState] = {}

            def load(sku: str) -> SkuState:
                state = loaded[sku] = self._load(sku)
                return state

            channel = self.rules.compiled.channels.get(command.channel)
            # Too late (its API answered already), or a channel dropped from the rules since
            # the API checked: nothing is held.
            if self._too_late(command, now, load) or channel is None:
                short = [Shortfall(line.sku, line.qty, 0) for line in command.lines]
            else:
                short = place_hold(
                    load,
                    command.hold_id,
                    channel,
                    self.rules.compiled,
                    command.lines,
                    command.expires_at,
                    now,
                )
            if short:
                return HoldReply(partition, False, shortfalls=short)
            for state in loaded.values():
                self._write(state, outcome)
                heapq.heappush(due, (command.expires_at, state.sku, command.hold_id))
            return HoldReply(partition, True)
        done = True
        committed = []
        for sku in dict.fromkeys(command.skus):
            state = self._load(sku)
            if isinstance(command, ExtendHold):
                changed = extend_hold(state, command.hold_id, command.expires_at)
                if changed:
                    heapq.heappush(due, (command.expires_at, sku, command.hold_id))
            elif isinstance(command, ReleaseHold):
                changed = release_hold(state, command.hold_id, now)
            else:
                channel = self.rules.compiled.channels.get(command.channel)
                lines = commit_hold(
                    state, command.hold_id, command.order_id, self.rules.compiled, channel, now
                )
                changed = lines is not None
                committed += (
                    lines if lines is not None else committed_before(state, command.order_id)
                )
            if changed:
                self._write(state, outcome)
            elif not isinstance(command, CommitHold):
                done = False
        if isinstance(command, CommitHold):
            done = bool(committed)
        return HoldReply(partition, done, committed=committed)

    @staticmethod
    def _too_late(command: PlaceHold, now: int, load: Callable[[str], SkuState]) -> bool:
        """A hold not placed yet whose API has answered already (a 503: nothing is held):
        placing it now would hold units that no one will ever release or commit."""
        tolerance = int(HOLD_CLOCK_TOLERANCE_S * MICROS_PER_SECOND)
        if not command.decide_by or now <= command.decide_by + tolerance:
            return False
        if any(command.hold_id in load(line.sku).holds for line in command.lines):
            return False  # placed in time and redelivered: it answers as the first time
        log.warning(
            "hold %s came %.1f s after its API answered: not placed",
            command.hold_id,
            (now - command.decide_by) / MICROS_PER_SECOND,
        )
        return True

    def _expire_due(self, partition: int, now: int, outcome: PartitionOutcome) -> None:
        due = self.hold_expiries.get(partition, [])
        skus = set()
        while due and due[0][0] <= now:
            _, sku, _ = heapq.heappop(due)
            skus.add(sku)
        for sku in sorted(skus):
            state = self._load(sku)
            if expire_holds(state, now):
                self._write(state, outcome)

    def _rules_changed(
        self, partition: int, change: RulesChanged, now: int, outcome: PartitionOutcome
    ) -> None:
        """Bump the version of every SKU of the partition whose answers the change moves."""
        self.rules.offer(change.revision, change.rules)
        stored = self.table.get(RULES_KEY)
        before = _partition_rules_decoder.decode(stored) if stored else PartitionRules(-1, Rules())
        if change.revision <= before.revision:
            return
        old, new = CompiledRules(before.rules), CompiledRules(change.rules)
        for key, value in list(self.table.partition_items(partition, HEAD)):
            # A version bump changes the head alone: a SKU not in the cache is read without
            # its sealed chunks (a rules change does not read a week of dedup ids), written
            # back with them untouched, and not cached, since it is not whole.
            state = self.cache.get(sku_of_head(key))
            whole = state is not None
            if state is None:
                state = load_state(decode_head(value), ())
            if bump_if_rules_move_answers(state, old, new, now):
                self._write(state, outcome, cache=whole)
        rules_record = _partition_rules_encoder.encode(
            PartitionRules(change.revision, change.rules)
        )
        self.table.write([(RULES_KEY, rules_record)])


def _unlisted(end: SnapshotEnd, figures: HeadFigures) -> list[Count]:
    return unlisted_zero_counts(end.snapshot_id, figures.sku, figures.positions, end.locations)

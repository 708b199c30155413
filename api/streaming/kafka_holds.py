"""Checkout holds in the streaming mode (SPEC 6). The API never decides from a cached value:
each hold command goes through Kafka to the single writer of its SKUs' partition, on the
control topic, in order with that partition's events, and the writer's reply comes back
through a Redis list once the command's effect is durable in its table.

A hold whose lines span partitions is decided in two steps. Each partition first holds its
lines tentatively, for TENTATIVE_S only; when every partition has granted, the API extends
them to the hold's real expiry, and when any line is short it releases the others. An API
that times out (503) sends a release to every partition: commands of one partition are
applied in order, so the release always comes after the hold it undoes, and if the API
itself dies a tentative hold runs out within TENTATIVE_S. No hold is left behind. The
replies of every command of this API process come back on one Redis list
(`hold_replies.py`).

The record of each hold request (what the API answered, the hold's lines) is kept in Redis
under `hold_key`, for a repeated hold_id, a release or a commit. A Redis flush forgets those
records: the holds themselves stay in the tables and still expire on time, but release and
commit then answer 404 unknown_hold for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Protocol

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from availability import NotReady, UnknownChannel
from availability.control import (
    CommitHold,
    ExtendHold,
    HoldCommand,
    HoldReply,
    PlaceHold,
    ReleaseHold,
    control_encoder,
)
from availability.errors import HoldsUnavailable, UnknownHold
from availability.holds import (
    HoldLineRequest,
    HoldRecord,
    HoldRequest,
    HoldStatus,
    Shortfall,
    expires_at,
    skus_of,
)
from availability.published import hold_key
from availability.timeutil import MICROS_PER_SECOND
from availability.topics import Names, partition_for

from .hold_replies import HoldReplies
from .kafka_link import ACK_TIMEOUT_S, KafkaLink, Record

log = logging.getLogger("availability.api.holds")

TENTATIVE_S: Final = 30  # how long a partition holds its lines before the others agree
# A record outlives its hold by a day, so a repeated request still gets its first answer.
RECORD_TTL_S: Final = 24 * 3600
_NOT_HELD: Final = "nothing is held: retry with the same hold_id"
_record_decoder: Final = msgspec.json.Decoder(HoldRecord)
_record_encoder: Final = msgspec.json.Encoder()


class ChannelCatalog(Protocol):
    def has_channel(self, channel: str) -> bool: ...


def wall_clock_micros() -> int:
    return time.time_ns() // 1000


class KafkaHolds:
    def __init__(
        self,
        kafka: KafkaLink,
        redis: Redis,
        replies: HoldReplies,
        names: Names,
        partitions: int,
        catalog: ChannelCatalog,
        timeout_s: float,
        clock: Callable[[], int] = wall_clock_micros,
    ) -> None:
        self._kafka = kafka
        self._redis = redis
        self._replies = replies
        self._names = names
        self._partitions = partitions
        self._catalog = catalog
        self._timeout_s = timeout_s
        self._clock = clock

    # -- the port ---------------------------------------------------------------------------

    async def place_hold(self, request: HoldRequest) -> HoldRecord:
        if not self._catalog.has_channel(request.channel):
            raise UnknownChannel(f"channel {request.channel!r} is not in the rules")
        hold_id = request.hold_id or uuid.uuid4().hex
        if request.hold_id is not None:  # an id of our own making was never used before
            known = await self._load(hold_id)
            if known is not None:
                return known  # a repeated request gets its first answer, holds nothing more
        now = self._clock()
        deadline = expires_at(request, now)
        groups = self._by_partition(request.lines)
        skus = [line.sku for line in request.lines]
        if len(groups) == 1:
            ((partition, lines),) = groups.items()
            place = PlaceHold("", hold_id, request.channel, lines, deadline)
            short = (await self._ask({partition: place}, hold_id, skus))[partition].shortfalls
        else:
            short = await self._place_across(hold_id, request.channel, groups, deadline, skus)
        status = HoldStatus.REFUSED if short else HoldStatus.HELD
        order = {line.sku: n for n, line in enumerate(request.lines)}
        short.sort(key=lambda s: order[s.sku])
        record = HoldRecord(hold_id, request.channel, status, deadline, request.lines, short)
        return await self._save_first(record)

    async def _place_across(
        self,
        hold_id: str,
        channel: str,
        groups: dict[int, list[HoldLineRequest]],
        deadline: int,
        skus: Sequence[str],
    ) -> list[Shortfall]:
        """A hold over several partitions: each holds its lines tentatively, one partition
        after the other in partition order, then all are extended to the real expiry. In a
        fixed order, racing holds contend on their first common partition only: whoever
        holds there goes on, so the units there go to holds that can complete (with 50 of
        each of two SKUs and 200 racing holds of both, exactly 50 are granted)."""
        tentative = self._clock() + TENTATIVE_S * MICROS_PER_SECOND
        held: list[str] = []  # the SKUs of the partitions that granted so far
        for partition in sorted(groups):
            place = PlaceHold("", hold_id, channel, groups[partition], tentative)
            reply = (await self._ask({partition: place}, hold_id, skus))[partition]
            if reply.shortfalls:
                if held:
                    await self._send(self._releases(hold_id, held))
                return list(reply.shortfalls)
            held += skus_of(groups[partition])
        extend = {
            p: ExtendHold("", hold_id, skus_of(lines), deadline) for p, lines in groups.items()
        }
        extended = await self._ask(extend, hold_id, skus)
        if not all(reply.done for reply in extended.values()):
            await self._send(self._releases(hold_id, skus))
            raise HoldsUnavailable(f"a partition's tentative hold ran out; {_NOT_HELD}")
        return []

    async def release_hold(self, hold_id: str) -> HoldRecord:
        record = await self._live(hold_id)
        await self._ask(self._releases(hold_id, record.skus()), hold_id, record.skus())
        record.status = HoldStatus.RELEASED
        await self._save(record)
        return record

    async def commit_hold(self, hold_id: str, order_id: str | None) -> HoldRecord:
        known = await self._load(hold_id)
        if known is not None and known.status is HoldStatus.COMMITTED:
            return known  # committing again answers as the first time
        record = await self._live(hold_id)
        record.order_id = order_id or hold_id
        commands = {
            partition: CommitHold("", hold_id, record.order_id, record.channel, skus_of(lines))
            for partition, lines in self._by_partition(record.lines).items()
        }
        replies = await self._ask(commands, hold_id, record.skus(), committing=True)
        if not any(reply.done for reply in replies.values()):
            # The writers expired it between our look at its time and the commit.
            record.status = HoldStatus.EXPIRED
            await self._save(record)
            raise UnknownHold(f"hold {hold_id!r} holds nothing any more: it was expired")
        if not all(reply.done for reply in replies.values()):
            log.warning(
                "hold %s expired on some partitions while it was committed: the order holds"
                " only the lines committed in time",
                hold_id,
            )
        order = {line.sku: n for n, line in enumerate(record.lines)}
        record.committed = sorted(
            (line for reply in replies.values() for line in reply.committed),
            key=lambda line: order.get(line.sku, len(order)),
        )
        record.status = HoldStatus.COMMITTED
        await self._save(record)
        return record

    # -- asking the writers -----------------------------------------------------------------

    async def _ask(
        self,
        commands: Mapping[int, HoldCommand],
        hold_id: str,
        skus: Sequence[str],
        *,
        committing: bool = False,
    ) -> dict[int, HoldReply]:
        """Send one command per partition and wait for every reply; on timeout release the
        hold everywhere (no hold is left behind) and raise HoldsUnavailable. A commit that
        times out is not undone: the writers may have applied it, and committing again
        answers as the first time."""
        request_id = uuid.uuid4().hex
        with self._replies.expect(request_id, len(commands)) as waiter:
            await self._send(commands, request_id)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter.complete.wait(), self._timeout_s)
        replies = waiter.replies
        if len(replies) < len(commands):
            missing = f"no decision from {len(commands) - len(replies)} partition(s) within"
            if committing:
                raise HoldsUnavailable(
                    f"{missing} {self._timeout_s:g} s; the commit may have been applied:"
                    " commit again (a repeated commit answers as the first)"
                )
            await self._send(self._releases(hold_id, skus))
            raise HoldsUnavailable(f"{missing} {self._timeout_s:g} s; {_NOT_HELD}")
        return replies

    async def _send(self, commands: Mapping[int, HoldCommand], request_id: str = "") -> None:
        """Send each command to its partition, its reply to come to this process's list (a
        release sent alone, with no request_id, is answered there too, and dropped)."""
        reply_to = self._replies.key
        # Past this, the answer is given (a 503, nothing held): a writer that meets the
        # command later refuses to place it (PlaceHold.decide_by).
        decide_by = self._clock() + int((ACK_TIMEOUT_S + self._timeout_s) * MICROS_PER_SECOND)
        records = [
            Record(
                self._names.control_topic,
                b"\x00hold",
                control_encoder.encode(_addressed(c, request_id, reply_to, decide_by)),
                p,
            )
            for p, c in commands.items()
        ]
        await self._kafka.send_all(records, _NOT_HELD)

    def _releases(self, hold_id: str, skus: Sequence[str]) -> dict[int, HoldCommand]:
        """A release of the hold on each partition of `skus`."""
        by_partition: dict[int, list[str]] = defaultdict(list)
        for sku in dict.fromkeys(skus):
            by_partition[partition_for(sku.encode(), self._partitions)].append(sku)
        return {p: ReleaseHold("", hold_id, group) for p, group in by_partition.items()}

    def _by_partition(self, lines: Sequence[HoldLineRequest]) -> dict[int, list[HoldLineRequest]]:
        groups: dict[int, list[HoldLineRequest]] = defaultdict(list)
        for line in lines:
            groups[partition_for(line.sku.encode(), self._partitions)].append(line)
        return dict(groups)

    # -- the records ------------------------------------------------------------------------

    async def _live(self, hold_id: str) -> HoldRecord:
        record = await self._load(hold_id)
        if record is None:
            raise UnknownHold(f"no hold {hold_id!r}")
        if record.status is HoldStatus.HELD and record.expires_at <= self._clock():
            record.status = HoldStatus.EXPIRED  # the writers expire it by themselves
        if record.status is not HoldStatus.HELD:
            raise UnknownHold(f"hold {hold_id!r} holds nothing any more: it was {record.status}")
        return record

    async def _load(self, hold_id: str) -> HoldRecord | None:
        try:
            data = await self._redis.get(hold_key(self._names.redis_namespace, hold_id))
        except RedisError as exc:
            raise NotReady(f"Redis cannot be reached ({exc}); retry shortly") from exc
        return _record_decoder.decode(data) if data is not None else None

    async def _save(self, record: HoldRecord) -> None:
        await self._write(record, only_first=False)

    async def _save_first(self, record: HoldRecord) -> HoldRecord:
        """Keep the first answer for the hold_id: a request racing with its own repeat on
        another API process answers what the first one stored."""
        if await self._write(record, only_first=True):
            return record
        known = await self._load(record.hold_id)
        return known if known is not None else record

    async def _write(self, record: HoldRecord, *, only_first: bool) -> bool:
        ttl = max(1, (record.expires_at - self._clock()) // MICROS_PER_SECOND) + RECORD_TTL_S
        try:
            done = await self._redis.set(
                hold_key(self._names.redis_namespace, record.hold_id),
                _record_encoder.encode(record),
                ex=ttl,
                nx=only_first,
            )
        except RedisError as exc:
            raise NotReady(f"Redis cannot be reached ({exc}); retry with the same hold_id") from exc
        return bool(done)


def _addressed(command: HoldCommand, request_id: str, reply_to: str, decide_by: int) -> HoldCommand:
    if isinstance(command, PlaceHold):
        return msgspec.structs.replace(
            command, request_id=request_id, reply_to=reply_to, decide_by=decide_by
        )
    return msgspec.structs.replace(command, request_id=request_id, reply_to=reply_to)

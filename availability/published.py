"""The read model the stream workers publish and the streaming API reads (Redis).

One hash per SKU, its key hash-tagged by SKU; each hash holds ready-to-send answers, so a
read is one round trip and no re-encoding:

    {ns}:{SKU}   v  version          u  updated_at (RFC 3339, or empty)
                 p  the positions answer (JSON)
                 c:<channel>               the channel answer (JSON), no breakdown
                 l:<channel>               its eligible locations with their sellable
                                           (a JSON array, by location id), paged from
                 c:<channel>:<location>    the answer asked with an eligible location
    {ns}:ready   <partition> -> the worker instance that last published it whole

A SKU's hash is replaced whole and only by a newer version. A partition is ready when a
worker has published every SKU of it since it took the partition over: until then a SKU
missing from Redis may exist, and the API must not answer it with a zero.
"""

from __future__ import annotations

import hashlib
from typing import Final, NamedTuple

import msgspec

from .rules import CompiledRules
from .state import SkuFigures
from .timeutil import format_micros
from .views import (
    Availability,
    LocationSellable,
    channel_quantity,
    location_pool,
    positions,
)

VERSION_FIELD: Final = "v"
UPDATED_FIELD: Final = "u"
POSITIONS_FIELD: Final = "p"
# In a feed's last-version hash, the newest entry id trimmed from its stream: no SKU can
# be named so (`~` is not in the id alphabet).
TRIMMED_FIELD: Final = "~trimmed"

_encoder: Final = msgspec.json.Encoder()


def sku_key(namespace: str, sku: str) -> str:
    return f"{namespace}:{{{sku}}}"


def ready_key(namespace: str) -> str:
    return f"{namespace}:ready"


# A partition's worker shows it can write Redis by renewing this key every second; a key
# older than this has expired, and readers are told the partition's writer is not writing
# (it cannot reach Redis, retrying meanwhile, or it is frozen).
WRITER_ALIVE_MS: Final = 15_000


def alive_key(namespace: str, partition: int) -> str:
    return f"{namespace}:alive:{partition}"


def feed_stream_key(namespace: str, channel: str) -> str:
    """The channel's feed: a Redis stream of its published items, the entry id the cursor."""
    return f"{namespace}:feed:{{{channel}}}"


def feed_last_key(namespace: str, channel: str) -> str:
    """SKU -> the version last appended to the channel's feed; one hash slot with the
    stream, so one script appends and records atomically (Redis Cluster too)."""
    return f"{namespace}:feed-last:{{{channel}}}"


def answer_field(channel: str, location: str | None = None) -> str:
    return f"c:{channel}" if location is None else f"c:{channel}:{location}"


def locations_field(channel: str) -> str:
    return f"l:{channel}"


Quantities = dict[str, int]  # channel -> the SKU's quantity on it: what the feeds carry


class Rendered(NamedTuple):
    fields: dict[str, str]  # the SKU's hash, every answer as JSON text
    quantities: Quantities


def published_fields(state: SkuFigures, rules: CompiledRules) -> dict[str, str]:
    return render(state, rules).fields


def render(state: SkuFigures, rules: CompiledRules) -> Rendered:
    """Every field of the SKU's hash, for the rules in force, and each channel's quantity.
    Each location's sellable is computed once and shared by the positions and every
    channel's answers: this runs for every SKU of every batch a worker applies."""
    view = positions(state, rules)
    updated = format_micros(state.updated_at) if state.version else None
    fields = {
        VERSION_FIELD: str(state.version),
        UPDATED_FIELD: updated or "",
        POSITIONS_FIELD: _encoder.encode(view).decode(),
    }
    quantities: Quantities = {}
    located = [
        (LocationSellable(p.location, p.sellable), rules.location_type(p.location))
        for p in view.positions
    ]
    unlocated_held = state.held_anywhere
    for name, channel in rules.channels.items():
        eligible = [entry for entry, kind in located if channel.is_eligible(entry.location, kind)]
        pool = max(0, sum(e.sellable for e in eligible) - unlocated_held)
        quantities[name] = channel_quantity(channel, pool)
        answer = Availability(state.sku, name, quantities[name], state.version, updated)
        fields[answer_field(name)] = _encoder.encode(answer).decode()
        fields[locations_field(name)] = _encoder.encode(eligible).decode()
        for entry in eligible:
            at_location = Availability(
                sku=state.sku,
                channel=name,
                sellable=channel_quantity(channel, location_pool(entry.sellable, pool)),
                version=state.version,
                updated_at=updated,
                location=entry.location,
                locations=[entry],
            )
            fields[answer_field(name, entry.location)] = _encoder.encode(at_location).decode()
    return Rendered(fields, quantities)


def unlisted_location_answer(
    sku: str, channel: str, location: str, version: int, updated_at: str | None
) -> Availability:
    """The answer for a location that has no position of the SKU or is not eligible for the
    channel: SPEC 3 says its pool is 0."""
    return Availability(
        sku=sku,
        channel=channel,
        sellable=0,
        version=version,
        updated_at=updated_at,
        location=location,
        locations=[],
    )


def never_seen_answer(sku: str, channel: str, location: str | None) -> Availability:
    return Availability(
        sku=sku,
        channel=channel,
        sellable=0,
        version=0,
        updated_at=None,
        location=location,
        locations=None if location is None else [],
    )


def hold_key(namespace: str, hold_id: str) -> str:
    """A hold request's record in the streaming mode (what the API answered, and the
    hold's lines), for repeats, releases and commits."""
    return f"{namespace}:hold:{{{hold_id}}}"


def reply_key(namespace: str, request_id: str) -> str:
    """Where the writers push their replies to one hold command (a Redis list)."""
    return f"{namespace}:reply:{{{request_id}}}"


def snapshot_digest(snapshot_id: str) -> bytes:
    """What names an ERP snapshot in keys, in both modes: its id may hold any printable
    character, and a key must not run into another."""
    return hashlib.blake2b(snapshot_id.encode(), digest_size=16).digest()


def snapshot_key(namespace: str, snapshot_id: str) -> str:
    """A list of the reports of every import of an ERP snapshot, oldest first."""
    return f"{namespace}:snapshot:{snapshot_digest(snapshot_id).hex()}"

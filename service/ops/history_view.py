"""What `availability sku-history` found about one SKU, and its two renderings: lines for a
person at a terminal, and JSON for a program."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from availability import Event, SkuState
from availability.published import POSITIONS_FIELD, UPDATED_FIELD, VERSION_FIELD
from availability.timeutil import format_micros

CHANNEL_PREFIX: Final = "c:"
_COMMON_FIELDS: Final = ("type", "event_id", "sku", "location", "occurred_at")
SKU_FIELDS_NOT_DOCUMENTS: Final = frozenset({"seen", "positions"})
RAW_SHOWN: Final = 120  # characters of a record that is no event, in the text rendering


@dataclass
class Entry:
    """One record of the SKU on an inventory topic."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    value: bytes | None
    event: Event | None
    error: str | None = None
    dead_lettered: str | None = None
    duplicate_of: str | None = None

    @property
    def where(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"

    @property
    def moment(self) -> datetime:
        """When it happened: its occurred_at, or Kafka's time for a record that is no event."""
        if self.event is not None:
            return self.event.occurred_at
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)


@dataclass
class History:
    sku: str
    partition: int
    partitions: int
    entries: list[Entry] = field(default_factory=list)
    state: SkuState | None = None
    published: dict[str, bytes] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def event_type(event: Event) -> str:
    return str(event.__struct_config__.tag)


def event_details(event: Event) -> dict[str, Any]:
    """The event's own fields, beyond those every event has."""
    data: dict[str, Any] = msgspec.to_builtins(event)
    return {k: v for k, v in data.items() if k not in _COMMON_FIELDS and v is not None}


def plain(value: Any) -> Any:
    """A stored value as named figures (documents are stored as arrays), times in RFC 3339."""
    if isinstance(value, msgspec.Struct):
        figures = {name: plain(getattr(value, name)) for name in value.__struct_fields__}
        if hasattr(value, "open_qty"):
            figures["open_qty"] = value.open_qty
        for name, figure in figures.items():
            if name.endswith("_at") and isinstance(figure, int) and figure:
                figures[name] = format_micros(figure)
        return figures
    if isinstance(value, list | tuple):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    return value


def held_documents(holder: msgspec.Struct, leave_out: frozenset[str]) -> dict[str, Any]:
    """kind -> document id -> figures, for every non-empty mapping field of `holder`: orders
    and transfers of a position, checkout holds of a SKU, and whatever comes next."""
    found: dict[str, Any] = {}
    for kind in holder.__struct_fields__:
        held = getattr(holder, kind)
        if kind not in leave_out and isinstance(held, dict) and held:
            found[kind] = {doc_id: plain(doc) for doc_id, doc in sorted(held.items())}
    return found


def documents(state: SkuState) -> dict[str, dict[str, Any]]:
    """location -> kind -> document id -> figures."""
    found = {
        location: held_documents(position, frozenset())
        for location, position in sorted(state.positions.items())
    }
    return {location: kinds for location, kinds in found.items() if kinds}


def sku_documents(state: SkuState) -> dict[str, Any]:
    """kind -> id -> figures, for what the SKU holds apart from positions (checkout holds)."""
    return held_documents(state, SKU_FIELDS_NOT_DOCUMENTS)


def published_view(published: dict[str, bytes]) -> dict[str, Any] | None:
    """The SKU's hash in Redis: version, positions and each channel's quantity."""
    if not published:
        return None
    positions = json.loads(published.get(POSITIONS_FIELD, b'{"positions": []}'))["positions"]
    channels = {
        name.removeprefix(CHANNEL_PREFIX): json.loads(value)["sellable"]
        for name, value in sorted(published.items())
        if name.startswith(CHANNEL_PREFIX) and ":" not in name.removeprefix(CHANNEL_PREFIX)
    }
    return {
        "version": int(published.get(VERSION_FIELD, b"0")),
        "updated_at": published.get(UPDATED_FIELD, b"").decode() or None,
        "positions": positions,
        "channels": channels,
    }


def entry_json(entry: Entry) -> dict[str, Any]:
    raw = None
    if entry.event is None and entry.value is not None:
        raw = entry.value.decode(errors="replace")
    return {
        "topic": entry.topic,
        "partition": entry.partition,
        "offset": entry.offset,
        "timestamp": format_micros(entry.timestamp_ms * 1000),
        "event": msgspec.to_builtins(entry.event) if entry.event is not None else None,
        "raw": raw,
        "error": entry.error,
        "dead_lettered": entry.dead_lettered,
        "duplicate_of": entry.duplicate_of,
    }


def render_json(history: History) -> str:
    state = history.state
    stored = None
    if state is not None:
        stored = {
            "version": state.version,
            "dedup_ids": len(state.seen),
            "documents": documents(state),
            **sku_documents(state),
        }
    return json.dumps(
        {
            "sku": history.sku,
            "partition": history.partition,
            "partitions": history.partitions,
            "events": [entry_json(e) for e in history.entries],
            "state": stored,
            "published": published_view(history.published),
            "notes": history.notes,
        },
        indent=2,
    )


def entry_line(entry: Entry) -> str:
    stamp = format_micros(entry.timestamp_ms * 1000)
    if entry.value is None:
        text = "no value"
    elif entry.event is None:
        shown = (entry.value or b"").decode(errors="replace")[:RAW_SHOWN]
        text = f"{entry.error}: {shown!r}"
    else:
        e = entry.event
        text = f"{event_type(e)} {e.event_id} at {e.location}, occurred {e.occurred_at.isoformat()}"
        details = " ".join(f"{k}={v}" for k, v in event_details(e).items())
        text += f" {details}" if details else ""
    if entry.dead_lettered is not None:
        text += f"  [dead-lettered: {entry.dead_lettered}]"
    if entry.duplicate_of is not None:
        text += f"  [duplicate of {entry.duplicate_of}]"
    return f"  {stamp}  {entry.where}  {text}"


def figures_line(figures: dict[str, Any], leave_out: str = "") -> str:
    return ", ".join(f"{k} {json.dumps(v)}" for k, v in figures.items() if k != leave_out)


def render_text(history: History) -> str:
    lines = [
        f"{history.sku}: partition {history.partition} of {history.partitions}; events from "
        "the start of each inventory topic, as far back as retention keeps them",
        f"events ({len(history.entries)}):",
        *(entry_line(e) for e in history.entries),
    ]
    state = history.state
    if state is None:
        lines.append("documents: none (the worker's table holds no state for this SKU)")
    else:
        lines.append(f"documents (the worker's table, version {state.version}):")
        for location, kinds in documents(state).items():
            for kind, held in kinds.items():
                for doc_id, figures in held.items():
                    lines.append(f"  {location} {kind} {doc_id}: {figures_line(figures)}")
        for kind, held in sku_documents(state).items():
            for doc_id, figures in held.items():
                lines.append(f"  {kind} {doc_id}: {figures_line(figures)}")
    view = published_view(history.published)
    if view is None:
        lines.append("published in Redis: nothing")
    else:
        lines.append(f"published in Redis (version {view['version']}, {view['updated_at']}):")
        for p in view["positions"]:
            lines.append(f"  {p['location']}: {figures_line(p, leave_out='location')}")
        for channel, sellable in view["channels"].items():
            lines.append(f"  channel {channel}: sellable {sellable}")
    lines += [f"note: {note}" for note in history.notes]
    return "\n".join(lines)

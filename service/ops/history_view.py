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
# The state's documents: per location (location -> id -> document), and per SKU (id -> document).
LOCATION_DOCUMENTS: Final = ("orders", "transfers")
SKU_DOCUMENTS: Final = ("holds",)
# A document's fields that say where it is kept (the keys it is shown under, its chunk), not
# what it holds.
NOT_FIGURES: Final = frozenset({"location", "order_id", "transfer_id", "hold_id", "chunk"})
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


@dataclass(frozen=True)
class Stored:
    """The SKU as the worker's table holds it: its state read back from its records (the
    head and the chunks), how many records that is and the largest one's bytes (key and
    value): a record near Kafka's 1 MB message limit would break the stream."""

    state: SkuState
    records: int
    largest_record: int


@dataclass
class History:
    sku: str
    partition: int
    partitions: int
    entries: list[Entry] = field(default_factory=list)
    stored: Stored | None = None
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


def document_figures(document: msgspec.Struct) -> dict[str, Any]:
    figures: dict[str, Any] = plain(document)
    return {name: figure for name, figure in figures.items() if name not in NOT_FIGURES}


def documents(state: SkuState) -> dict[str, dict[str, Any]]:
    """location -> kind -> document id -> figures."""
    found: dict[str, dict[str, Any]] = {}
    for kind in LOCATION_DOCUMENTS:
        by_location: dict[str, dict[str, msgspec.Struct]] = getattr(state, kind)
        for location, held in by_location.items():
            if held:
                found.setdefault(location, {})[kind] = {
                    doc_id: document_figures(doc) for doc_id, doc in sorted(held.items())
                }
    return dict(sorted(found.items()))


def sku_documents(state: SkuState) -> dict[str, Any]:
    """kind -> id -> figures, for what the SKU holds apart from locations (checkout holds)."""
    found: dict[str, Any] = {}
    for kind in SKU_DOCUMENTS:
        held: dict[str, msgspec.Struct] = getattr(state, kind)
        if held:
            found[kind] = {doc_id: document_figures(doc) for doc_id, doc in sorted(held.items())}
    return found


def stored_positions(state: SkuState) -> dict[str, Any]:
    return {location: plain(position) for location, position in sorted(state.positions.items())}


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
    stored = None
    if history.stored is not None:
        state = history.stored.state
        stored = {
            "version": state.version,
            "dedup_ids": len(state.seen),
            "records": history.stored.records,
            "largest_record_bytes": history.stored.largest_record,
            "positions": stored_positions(state),
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


def records_held_in(records: int) -> str:
    chunks = records - 1
    if not chunks:
        return "1 record (its head alone)"
    return f"{records} records (its head and {chunks} chunk{'s' if chunks > 1 else ''})"


def render_text(history: History) -> str:
    lines = [
        f"{history.sku}: partition {history.partition} of {history.partitions}; events from "
        "the start of each inventory topic, as far back as retention keeps them",
        f"events ({len(history.entries)}):",
        *(entry_line(e) for e in history.entries),
    ]
    if history.stored is None:
        lines.append("documents: none (the worker's table holds no state for this SKU)")
    else:
        stored = history.stored
        state = stored.state
        lines.append(
            f"the worker's table: version {state.version}, {len(state.seen)} dedup ids; "
            f"{records_held_in(stored.records)}, the largest {stored.largest_record:,} bytes; "
            "positions:"
        )
        for location, figures in stored_positions(state).items():
            shown = {name: figure for name, figure in figures.items() if figure not in (None, "")}
            lines.append(f"  {location}: {figures_line(shown)}")
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

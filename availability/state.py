"""What the service remembers about one SKU (SPEC section 3), in memory.

A SKU's head is its version and its positions. Everything else it remembers grows with its
trade: the event ids of the dedup window, the on-hand effects a later count replays,
documents and checkout holds. Those are items, and every item lives in one numbered chunk
of at most `CHUNK_ITEMS` items (or about `CHUNK_BYTES`): new items go to the open chunk,
which is sealed when full and a new one opened. The book below says which chunks changed
since the SKU was last written, so a write stores the head and only those chunks
(`layout.py`): the cost of an event and the size of every record stay bounded however much
a bestseller has seen.

Reserved and inbound are derived from documents, never decremented blindly, which is what
makes arrival order irrelevant.
"""

from __future__ import annotations

from typing import Final, Protocol, TypeVar

from msgspec import Struct, field

# A chunk is sealed at whichever comes first: both keep every record far under Kafka's
# 1 MB message limit and small enough that rewriting one for a changed document is cheap.
CHUNK_ITEMS: Final = 64
CHUNK_BYTES: Final = 4096
_ITEM_OVERHEAD: Final = 12  # msgpack tag, array header and integers of an item, roughly


# gc=False: these records hold no reference cycles, and a service holding a few hundred
# thousand of them otherwise pays for them in every full collection (a p99 of 150 ms
# instead of 20 ms on a read benchmark).
class Position(Struct, gc=False, omit_defaults=True):
    """One SKU at one location. `reserved` and `inbound` cache the sums over documents;
    `held` caches the units that live checkout holds keep here (SPEC 6: they count as
    reserved, and readers see them in `reserved`)."""

    on_hand: int = 0
    unsellable: int = 0
    reserved: int = 0
    inbound: int = 0
    newest_at: int = 0
    # The last applied count, ordered by (occurred_at, event_id) so ties are deterministic.
    last_count_at: int | None = None
    last_count_id: str = ""
    last_count_drift: int | None = None
    held: int = 0
    # The applied count before the last one: a late event after it (and at or before the
    # last) was missing from the books the last count was compared with.
    prev_count_at: int | None = None

    @property
    def oversold(self) -> bool:
        return self.on_hand - self.reserved < 0


# Items. Each is stored as a tagged array; documents and holds change in place and know
# their chunk, so that a change marks that chunk to be written again.


class Seen(Struct, tag="s", array_like=True, gc=False, frozen=True):
    """An event id applied for this SKU, with its occurred_at (µs)."""

    event_id: str
    at: int


class Effect(Struct, tag="f", array_like=True, gc=False, frozen=True):
    """An applied on-hand effect at a location: what a later count replays on its figure."""

    location: str
    at: int
    delta: int


class OrderDoc(Struct, tag="o", array_like=True, gc=False):
    location: str
    order_id: str
    ordered: int = 0
    picked: int = 0
    cancelled: int = 0
    last_at: int = 0  # newest occurred_at (µs) of the events that touched it
    chunk: int = 0

    @property
    def open_qty(self) -> int:
        return max(0, self.ordered - self.picked - self.cancelled)


class TransferDoc(Struct, tag="x", array_like=True, gc=False):
    location: str  # the receiving location
    transfer_id: str
    shipped: int = 0
    received: int = 0
    last_at: int = 0
    chunk: int = 0

    @property
    def open_qty(self) -> int:
        return max(0, self.shipped - self.received)


class HeldLine(Struct, array_like=True, gc=False):
    location: str | None  # None: held from every channel's pool, not at one location
    qty: int


class SkuHold(Struct, tag="h", array_like=True, gc=False):
    """A checkout hold's lines for this SKU, until `expires_at` (server time, µs)."""

    hold_id: str
    expires_at: int
    lines: list[HeldLine]
    chunk: int = 0


Item = Seen | Effect | OrderDoc | TransferDoc | SkuHold
Doc = TypeVar("Doc", OrderDoc, TransferDoc)


# Chunk and Book are Structs with gc=False, and their sets are dicts of ints, for the same
# reason as the records above: a worker holds a hundred thousand states, and every object
# the collector tracks is walked at each full collection (tracked objects per new state went
# from 1 to 7 with the chunks, and a stream of new SKUs paused for them).
class Chunk(Struct, gc=False):
    """Items in the order they came, the newest time among them, and their rough size."""

    items: list[Item] = []
    max_at: int = 0
    size: int = 0


def chunk_of(items: list[Item]) -> Chunk:
    """A chunk of items read back or cut off: its time and size counted."""
    if not items:
        return Chunk()
    return Chunk(
        items, max(_time_of(item) for item in items), sum(_size_of(item) for item in items)
    )


class Book(Struct, gc=False):
    """Which chunk holds each item, and which sealed chunks changed or emptied since the SKU
    was last written. The open chunk is stored inside the head, so it is always written;
    new items go there, and `seal` cuts it into sealed chunks when it is full."""

    open_no: int = 0
    # A head read alone (for answers): its sealed chunks were not read, so it must never
    # be changed or written.
    partial: bool = False
    open: Chunk = field(default_factory=Chunk)
    sealed: dict[int, Chunk] = {}
    dirty: dict[int, None] = {}  # a set of chunk numbers (a dict of ints is not tracked)
    dropped: dict[int, None] = {}

    def add(self, item: Item, at: int, size: int) -> int:
        """Put a new item (its time, its rough size) in the open chunk; returns that
        chunk's number."""
        assert not self.partial, "a state read for answers only is never changed"
        chunk = self.open
        chunk.items.append(item)
        if at > chunk.max_at:
            chunk.max_at = at
        chunk.size += size
        return self.open_no

    def seal(self) -> None:
        """Before a write: cut full chunks off the front of the open one. Sealing only
        here, not as items come, leaves no trace of items added and taken out again
        between two writes (a refused hold), and a write always finds the open chunk
        within bounds however many events came since the last."""
        if len(self.open.items) < CHUNK_ITEMS and self.open.size < CHUNK_BYTES:
            return  # the common case: nothing to cut, and nothing to count
        items = self.open.items
        start, size = 0, 0
        for end, item in enumerate(items, 1):
            size += _size_of(item)
            if end - start >= CHUNK_ITEMS or size >= CHUNK_BYTES:
                self._seal(items[start:end])
                start, size = end, 0
        # The rest stays open, its size counted afresh (items taken out since it was
        # last counted left the running count high).
        self.open = chunk_of(items[start:])
        renumber(self.open.items, self.open_no)

    def _seal(self, items: list[Item]) -> None:
        number = self.open_no
        renumber(items, number)
        self.sealed[number] = chunk_of(items)
        self.dirty[number] = None
        self.open_no = number + 1

    def grow(self, number: int, size: int) -> None:
        """An item of chunk `number` grew by about `size` bytes (a hold's new line)."""
        self.chunk(number).size += size

    def chunk(self, number: int) -> Chunk:
        return self.open if number == self.open_no else self.sealed[number]

    def touch(self, number: int, at: int) -> None:
        """An item of chunk `number` changed in place (at event time `at`)."""
        chunk = self.chunk(number)
        chunk.max_at = max(chunk.max_at, at)
        if number != self.open_no:
            self.dirty[number] = None

    def discard(self, number: int, item: Item) -> None:
        """Take `item` out of chunk `number`; an emptied sealed chunk is deleted."""
        chunk = self.chunk(number)
        chunk.items = [other for other in chunk.items if other is not item]
        if number == self.open_no:
            return
        if chunk.items:
            self.dirty[number] = None
        else:
            self.drop(number)

    def drop(self, number: int) -> None:
        del self.sealed[number]
        self.dirty.pop(number, None)
        self.dropped[number] = None


def renumber(items: list[Item], number: int) -> None:
    for item in items:
        if isinstance(item, OrderDoc | TransferDoc | SkuHold):
            item.chunk = number


def _time_of(item: Item) -> int:
    if isinstance(item, Seen | Effect):
        return item.at
    if isinstance(item, OrderDoc | TransferDoc):
        return item.last_at
    return 0  # a hold ends by expiry or release, never by age


def line_size(line: HeldLine) -> int:
    return len(line.location or "") + _ITEM_OVERHEAD


def _size_of(item: Item) -> int:
    if isinstance(item, Seen):
        return len(item.event_id) + _ITEM_OVERHEAD
    if isinstance(item, Effect):
        return len(item.location) + _ITEM_OVERHEAD
    if isinstance(item, OrderDoc):
        return len(item.location) + len(item.order_id) + 2 * _ITEM_OVERHEAD
    if isinstance(item, TransferDoc):
        return len(item.location) + len(item.transfer_id) + 2 * _ITEM_OVERHEAD
    return len(item.hold_id) + sum(len(line.location or "") + _ITEM_OVERHEAD for line in item.lines)


class SkuFigures(Protocol):
    """What every answer about a SKU is computed from: its whole state, or its head alone
    (layout.SkuHead), read without its chunks."""

    @property
    def sku(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def updated_at(self) -> int: ...
    @property
    def newest_at(self) -> int: ...
    @property
    def held_anywhere(self) -> int: ...
    @property
    def positions(self) -> dict[str, Position]: ...


class SkuState(Struct, gc=False):
    sku: str
    version: int = 0
    updated_at: int = 0  # server time (µs) of the last version change
    newest_at: int = 0  # newest occurred_at seen for this SKU
    compacted_at: int = 0  # newest_at when expired items were last dropped
    held_anywhere: int = 0  # units of live holds that name no location
    positions: dict[str, Position] = {}
    # Items, indexed for the rules (each is also in one chunk of `book`):
    seen: dict[str, int] = {}  # event_id -> occurred_at (µs), inside the dedup window
    orders: dict[str, dict[str, OrderDoc]] = {}  # location -> order_id -> document
    transfers: dict[str, dict[str, TransferDoc]] = {}  # receiving location -> transfer_id
    effects: dict[str, list[Effect]] = {}  # location -> effects after its last count
    holds: dict[str, SkuHold] = {}  # hold_id -> its lines for this SKU
    book: Book = field(default_factory=Book)

    def position(self, location: str) -> Position:
        position = self.positions.get(location)
        if position is None:
            position = self.positions[location] = Position()
        return position

    # remember and add_effect run for nearly every event: Book.add is written out in them.
    def remember(self, event_id: str, at: int) -> None:
        self.seen[event_id] = at
        chunk = self._open_chunk()
        chunk.items.append(Seen(event_id, at))
        if at > chunk.max_at:
            chunk.max_at = at
        chunk.size += len(event_id) + _ITEM_OVERHEAD

    def add_effect(self, location: str, at: int, delta: int) -> None:
        effect = Effect(location, at, delta)
        effects = self.effects.get(location)
        if effects is None:
            self.effects[location] = [effect]
        else:
            effects.append(effect)
        chunk = self._open_chunk()
        chunk.items.append(effect)
        if at > chunk.max_at:
            chunk.max_at = at
        chunk.size += len(location) + _ITEM_OVERHEAD

    def _open_chunk(self) -> Chunk:
        book = self.book
        assert not book.partial, "a state read for answers only is never changed"
        return book.open

    def order(self, location: str, order_id: str) -> OrderDoc:
        return self._document(self.orders, OrderDoc, location, order_id)

    def transfer(self, location: str, transfer_id: str) -> TransferDoc:
        return self._document(self.transfers, TransferDoc, location, transfer_id)

    def _document(
        self, documents: dict[str, dict[str, Doc]], kind: type[Doc], location: str, doc_id: str
    ) -> Doc:
        """The document at `location`, opened (and put in the open chunk) if new."""
        docs = documents.setdefault(location, {})
        doc = docs.get(doc_id)
        if doc is None:
            doc = docs[doc_id] = kind(location, doc_id)
            doc.chunk = self.book.add(doc, 0, _size_of(doc))
        return doc

    def add_hold(self, hold_id: str, expires_at: int) -> SkuHold:
        hold = self.holds[hold_id] = SkuHold(hold_id, expires_at, [])
        # Its lines come after: a full hold (100 lines) is still far inside a chunk's bound.
        hold.chunk = self.book.add(hold, 0, _size_of(hold))
        return hold

    def remove_hold(self, hold: SkuHold) -> None:
        del self.holds[hold.hold_id]
        self.book.discard(hold.chunk, hold)

    def index(self, item: Item) -> None:
        """Put an item read back from a chunk where the rules look for it."""
        if isinstance(item, Seen):
            self.seen[item.event_id] = item.at
        elif isinstance(item, Effect):
            last_count = self.position(item.location).last_count_at
            if last_count is None or item.at > last_count:
                self.effects.setdefault(item.location, []).append(item)
        elif isinstance(item, OrderDoc):
            self.orders.setdefault(item.location, {})[item.order_id] = item
        elif isinstance(item, TransferDoc):
            self.transfers.setdefault(item.location, {})[item.transfer_id] = item
        else:
            self.holds[item.hold_id] = item

    def forget(self, item: Item) -> None:
        """Take an item of a dropped chunk out of the indexes (effects are taken out by the
        caller, all at once: a list per location)."""
        if isinstance(item, Seen):
            self.seen.pop(item.event_id, None)
        elif isinstance(item, OrderDoc):
            docs = self.orders.get(item.location, {})
            if docs.get(item.order_id) is item:
                del docs[item.order_id]
                if not docs:
                    del self.orders[item.location]
        elif isinstance(item, TransferDoc):
            transfers = self.transfers.get(item.location, {})
            if transfers.get(item.transfer_id) is item:
                del transfers[item.transfer_id]
                if not transfers:
                    del self.transfers[item.location]

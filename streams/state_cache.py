"""The worker's decoded SKU records, kept between batches.

Decoding a SKU's record was the largest single cost of an event in a worker (py-spy: a
sixth of its busy time; the record holds the SKU's positions, documents and dedup ids), and
under load most SKUs come back batch after batch. So the records a worker writes stay
decoded here, and the next batch applies its events to them in place.

That is only right while each cached record is exactly what the table holds:

- a record enters only when it is written (`Processor._write`), as the object just encoded;
- nothing else keeps a reference that could see a later change: what a batch hands on
  (to Redis, the feeds) is the encoded record, not the object;
- a batch that fails part way (its table writes are dropped) drops the whole cache;
- a rebalance drops the whole cache: a partition this worker gives up and gets back may
  have been changed meanwhile by its other owner, and faust restores it from the
  changelog, not through here.

The cache holds at most `size` SKUs, the least recently written going first.
"""

from __future__ import annotations

from collections import OrderedDict

from availability import SkuState


class StateCache:
    def __init__(self, size: int) -> None:
        self.size = size
        self._states: OrderedDict[str, SkuState] = OrderedDict()
        self._generation: object = None

    def get(self, sku: str) -> SkuState | None:
        return self._states.get(sku)

    def written(self, state: SkuState) -> None:
        """`state` is what the table now holds for its SKU."""
        if self.size <= 0:
            return
        self._states[state.sku] = state
        self._states.move_to_end(state.sku)
        if len(self._states) > self.size:
            self._states.popitem(last=False)

    def clear(self) -> None:
        self._states.clear()

    def follow_generation(self, generation: object) -> None:
        """Drop everything when the consumer group's generation moved (a rebalance)."""
        if generation != self._generation:
            self._states.clear()
            self._generation = generation

    def __len__(self) -> int:
        return len(self._states)

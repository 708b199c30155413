"""The garbage collector of a long-running process, settled once it has started.

faust, FastAPI, uvicorn and what they import leave a few hundred thousand objects that live
as long as the process. Each full collection walks all of them again: in a py-spy and
gc-callback look at the streaming worker under checkout holds, full collections paused it
for 50 to 75 ms (the API for 20 to 55 ms), a few times a minute, which was most of the hold
latency's tail. Frozen after start-up, they are left out of every later collection.
"""

from __future__ import annotations

import gc


def settle_garbage_collector(young_threshold: int | None = None) -> None:
    """Collect what start-up left behind, then freeze the survivors: later collections
    walk only what was allocated since. Call once, when the process is serving.

    `young_threshold`, if given, is how many allocations (net) start a young collection,
    instead of CPython's 700; every tenth or twentieth of those walks the older objects."""
    gc.collect()
    gc.freeze()
    if young_threshold is not None:
        gc.set_threshold(young_threshold, 20, 10)

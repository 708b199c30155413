"""Faults injected into a process the tests start with this folder on PYTHONPATH (Python
imports `sitecustomize` at start-up). Each widens a window that production hits only by
chance, so that a test hits it every time; nothing here is ever on a deployment's path.

FAULT_SEEK_DELAY_S: the consumer waits this long before each seek to the committed offsets,
so the fetch loop fetches (and begins delivering) records first, as it does now and then
when faust resumes the source partitions at the end of a recovery.
"""

import asyncio
import os
import sys
from typing import Any

_seek_delay = os.environ.get("FAULT_SEEK_DELAY_S")

if _seek_delay:
    from streams import transport

    _seek = transport.RewindingConsumer.perform_seek

    async def _delayed_seek(consumer: Any) -> None:
        await asyncio.sleep(float(_seek_delay or 0))
        await _seek(consumer)

    setattr(transport.RewindingConsumer, "perform_seek", _delayed_seek)  # noqa: B010
    print(f"fault injected: every seek waits {_seek_delay} s first", file=sys.stderr)

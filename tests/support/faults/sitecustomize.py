"""Faults injected into a process the tests start with this folder on PYTHONPATH (Python
imports `sitecustomize` at start-up). Each widens a window that production hits only by
chance, so that a test hits it every time; nothing here is ever on a deployment's path.

FAULT_SEEK_DELAY_S: the consumer waits this long before each seek to the committed offsets,
so the fetch loop fetches (and begins delivering) records first, as it does now and then
when faust resumes the source partitions at the end of a recovery.

FAULT_FREEZE_BEFORE_COMMIT: a path; the first changelog transaction about to be committed
once a file is there removes it and freezes the process (SIGSTOP), records sent and not
committed: a worker paused in the middle of a write, whose partitions move meanwhile.
"""

import asyncio
import os
import signal
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

_freeze_trigger = os.environ.get("FAULT_FREEZE_BEFORE_COMMIT")

if _freeze_trigger:
    from streams import changelog

    _commit = changelog.ChangelogWriter._commit

    def _freeze_if_asked(trigger: str) -> None:
        if os.path.exists(trigger):
            os.remove(trigger)
            print("fault injected: frozen before a changelog commit", file=sys.stderr, flush=True)
            os.kill(os.getpid(), signal.SIGSTOP)

    async def _freezing_commit(writer: Any, *args: Any) -> None:
        _freeze_if_asked(_freeze_trigger or "")
        await _commit(writer, *args)

    setattr(changelog.ChangelogWriter, "_commit", _freezing_commit)  # noqa: B010

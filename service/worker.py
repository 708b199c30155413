"""`availability worker`: create the topics, guard the local state, run the faust worker.

Local table state is trusted only after a clean shutdown. A killed worker may have written
its local RocksDB ahead of the changelog (faust sends changelog records after the local
write); its redelivered events would then look like duplicates and never reach the
changelog, and a later owner of the partition would miss them. So after an unclean stop
the local tables are dropped and rebuilt from the changelog, which is the truth.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import uuid
from pathlib import Path

import faust

from api.streaming.topics_admin import ensure_topics
from availability import Settings
from availability.topics import Names
from streams.app import Worker

log = logging.getLogger("availability.worker")
CLEAN_MARKER = ".clean-shutdown"


def prepare_data_dir(data_dir: str) -> None:
    root = Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    marker = root / CLEAN_MARKER
    if marker.exists():
        marker.unlink()
        return
    stale = [path for path in root.iterdir() if path.name != CLEAN_MARKER]
    if stale:
        log.warning("last stop was not clean: dropping local tables, recovering from changelogs")
        for path in stale:
            shutil.rmtree(path) if path.is_dir() else path.unlink()


def run_worker(settings: Settings) -> int:
    instance_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    prepare_data_dir(settings.data_dir)
    asyncio.run(
        ensure_topics(settings.kafka_bootstrap, Names(settings.topic_prefix), settings.partitions)
    )
    worker = Worker(settings, instance_id)
    runner = faust.Worker(worker.app, loglevel=settings.log_level.upper(), quiet=True)
    code = 1
    try:
        runner.execute_from_commandline()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    if worker.failed is not None:
        code = code or 1  # its local tables are ahead of the changelog: never trust them
    if code == 0:
        (Path(settings.data_dir) / CLEAN_MARKER).touch()
    return code

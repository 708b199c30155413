"""A faust agent that only counts events: the framework's own ceiling, for the benchmark.

python -m loadtests.faust_ceiling TOPIC_PREFIX EVENTS PARTITIONS   (prints events/s)
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
import uuid
from typing import Any

import faust

from availability.topics import Names


def main() -> None:
    prefix, total, partitions = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    app = faust.App(
        f"{prefix}ceiling-{uuid.uuid4().hex[:6]}",
        broker="kafka://127.0.0.1:9092",
        web_enabled=False,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        topic_partitions=partitions,
        datadir=tempfile.mkdtemp(prefix="faust-ceiling-"),
    )
    source = app.topic(*Names(prefix).inventory_topics, key_type=bytes, value_type=bytes)
    seen = {"events": 0, "started": 0.0}

    @app.agent(source, concurrency=1)
    async def count(stream: Any) -> None:
        async for events in stream.take_events(2000, within=0.01):
            if not seen["started"]:
                seen["started"] = time.perf_counter()
            seen["events"] += len(events)
            if seen["events"] >= total:
                rate = seen["events"] / (time.perf_counter() - seen["started"])
                os.write(1, f"\n{rate:.1f}\n".encode())  # fd 1: mode redirects print()
                os._exit(0)

    faust.Worker(app, loglevel="WARNING", quiet=True).execute_from_commandline()


if __name__ == "__main__":
    main()

"""`availability rebuild-read-model`: have the running workers republish partitions to Redis.

A worker checks every second that the ready mark of each partition it owns (the hash
`<ns>:ready`, partition -> worker instance) names it, and republishes every SKU of a
partition whose mark does not, then marks it again (`Worker.maintain` in streams/app.py).
This command is the operator's trigger for that: it removes the marks and waits until the
workers have put every one back.

Nothing is deleted but the marks. The SKU hashes stay, so readers keep their answers; a SKU
missing from Redis (what a rebuild is for) answers 503 `not_ready` until its partition is
marked again, never a false zero, and `/readyz` of the APIs answers 503 meanwhile (seconds
per partition). A republish never overwrites a hash with the same or an older version:
the rebuild fills what is missing, it does not rewrite what is there.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final

import redis

from availability import Settings
from availability.published import ready_key
from availability.topics import Names

from .progress import Progress, described, fail, without_password

COMMAND: Final = "rebuild-read-model"
POLL_S: Final = 0.25


def marks_of(client: redis.Redis, key: str, partitions: Sequence[int]) -> dict[int, str]:
    """Partition -> the worker that marked it ready, for the marked ones."""
    values = client.hmget(key, [str(p) for p in partitions])
    return {p: _text(v) for p, v in zip(partitions, values, strict=True) if v}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def rebuild_read_model(
    settings: Settings, partitions: Sequence[int] | None, timeout_s: float
) -> int:
    wanted = sorted(set(partitions)) if partitions else list(range(settings.partitions))
    if outside := [p for p in wanted if not 0 <= p < settings.partitions]:
        fail(COMMAND, f"no partition {outside} among AVAIL_PARTITIONS={settings.partitions}")
        return 2
    key = ready_key(Names(settings.topic_prefix).redis_namespace)
    client = redis.Redis.from_url(
        settings.redis_url, socket_timeout=10, **settings.redis_options(settings.redis_url)
    )
    try:
        return _rebuild(client, key, wanted, timeout_s)
    except (redis.RedisError, OSError) as exc:
        fail(COMMAND, f"Redis at {without_password(settings.redis_url)}: {described(exc)}")
        return 1
    finally:
        client.close()


def _rebuild(client: redis.Redis, key: str, wanted: list[int], timeout_s: float) -> int:
    progress = Progress(COMMAND)
    before = marks_of(client, key, wanted)
    client.hdel(key, *[str(p) for p in wanted])
    owners = ", ".join(sorted(set(before.values()))) or "no worker"
    progress.say(
        f"cleared the ready marks of {len(wanted)} partitions ({len(before)} were marked, "
        f"by {owners}); SKU answers are kept; waiting for the workers to republish"
    )
    deadline = time.monotonic() + timeout_s
    while True:
        marked = marks_of(client, key, wanted)
        waiting = [p for p in wanted if p not in marked]
        if not waiting:
            workers = ", ".join(sorted(set(marked.values())))
            print(
                f"{COMMAND}: all {len(wanted)} partitions republished and ready again "
                f"in {progress.elapsed_s:.1f} s, by {workers}",
                flush=True,
            )
            return 0
        if time.monotonic() >= deadline:
            fail(
                COMMAND,
                f"timed out after {timeout_s:g} s: partitions {waiting} are not ready yet. "
                "Is a worker running with this AVAIL_APP_ID and AVAIL_TOPIC_PREFIX? A "
                "running worker republishes within a second or two of finding its mark gone "
                "(`availability_read_model_rebuilds_total` in its metrics); the partitions not "
                "ready stay so until a worker republishes them",
            )
            return 1
        progress.tick(f"{len(marked)} of {len(wanted)} partitions ready, waiting for {waiting}")
        time.sleep(POLL_S)

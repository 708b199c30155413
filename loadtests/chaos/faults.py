"""The six faults of issue 17. Each runs while the load goes on, blocks for its whole
length (the fault and its repair), and returns when the repair is done: that moment is the
fault's end, from which the suite times the return to right answers."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from tests.support.streaming import WorkerProcess

from .harness import Harness
from .profile import Profile

WORKER_DOWN_S: Final = 3.0  # between a worker's kill -9 and its restart
REDIS_DOWN_S: Final = 3.0


WATCHED: Final = ("fenc", "Fenc", "changelog write failed", "stops", "Traceback", "revoked")
WATCHED_LINES: Final = 6


@dataclass
class FaultRun:
    started: float = 0.0  # monotonic
    ended: float = 0.0
    notes: list[str] = field(default_factory=list)
    watched: list[tuple[str, WorkerProcess, int]] = field(default_factory=list)

    def watch(self, name: str, worker: WorkerProcess) -> None:
        """Note what `worker` logs from now on about fencing and stopping."""
        size = worker.log_path.stat().st_size if worker.log_path.exists() else 0
        self.watched.append((name, worker, size))

    def watched_lines(self) -> list[str]:
        found = []
        for name, worker, offset in self.watched:
            with worker.log_path.open("rb") as log:
                log.seek(offset)
                text = log.read().decode(errors="replace")
            lines = [
                line.strip()[:240] for line in text.splitlines() if any(w in line for w in WATCHED)
            ]
            found += [f"{name} logged: {line}" for line in lines[:WATCHED_LINES]]
            if not lines:
                found.append(f"{name} logged nothing about fencing or stopping")
            state = "running" if worker.running else "not running (the supervisor restarts it)"
            found.append(f"{name} is {state} at the check")
        return found


def no_fault(h: Harness, profile: Profile, run: FaultRun) -> None:
    """0. no fault, the same length: the baseline, and the stack's warm-up."""
    time.sleep(profile.fault_s)


def broker_killed(h: Harness, profile: Profile, run: FaultRun) -> None:
    """1. kill -9 of the broker leading the most partitions, and its restart."""
    node = asyncio.run(h.cluster.busiest_leader(h.stack.tag))
    run.notes.append(f"broker {node + 1} killed")
    h.cluster.stop_broker(node, hard=True)
    time.sleep(profile.fault_s)
    h.cluster.start_broker(node)
    h.cluster.wait_until_whole()


def worker_lost_its_disk(h: Harness, profile: Profile, run: FaultRun) -> None:
    """2. kill -9 of one worker, its restart with an empty data directory."""
    worker = h.workers[0]
    with h.unsupervised(worker):
        worker.kill()
        shutil.rmtree(worker.data_dir, ignore_errors=True)
        time.sleep(WORKER_DOWN_S)
        worker.start()


def both_workers_killed(h: Harness, profile: Profile, run: FaultRun) -> None:
    """3. both workers killed at once (kill -9), then started again."""
    with h.unsupervised(*h.workers):
        for worker in h.workers:
            worker.kill()
        time.sleep(WORKER_DOWN_S)
        for worker in h.workers:
            worker.start()


def redis_lost_its_data(h: Harness, profile: Profile, run: FaultRun) -> None:
    """4. Redis restarted with its data gone: the workers rebuild the read model."""
    h.redis.kill()
    time.sleep(REDIS_DOWN_S)
    h.redis.start()


def api_cut_from_kafka(h: Harness, profile: Profile, run: FaultRun) -> None:
    """5. Kafka unreachable from API b for fault_s: its proxies stop (connections closed,
    new ones refused); API a goes on."""
    h.cluster.cut_proxies()
    try:
        time.sleep(profile.fault_s)
    finally:
        h.cluster.restore_proxies()


def worker_frozen(h: Harness, profile: Profile, run: FaultRun) -> None:
    """6. one worker frozen (SIGSTOP) past its 10 s session timeout, so its partitions move
    to the other, then resumed (SIGCONT). Fencing must keep it from writing them again; a
    fenced worker that stops is restarted by the supervisor."""
    worker = h.workers[1]
    run.watch("worker 2", worker)
    with worker.paused():
        time.sleep(profile.fault_s)
    run.notes.append(f"worker 2 frozen {profile.fault_s:.0f} s")


Fault = Callable[[Harness, Profile, FaultRun], None]

FAULTS: Final[dict[int, tuple[str, Fault]]] = {
    0: ("no fault (baseline)", no_fault),
    1: ("kill -9 of the busiest broker, restart", broker_killed),
    2: ("kill -9 of a worker, restart on an empty disk", worker_lost_its_disk),
    3: ("kill -9 of both workers, restart", both_workers_killed),
    4: ("Redis restarted with its data gone", redis_lost_its_data),
    5: ("API b cut from Kafka for the fault's length", api_cut_from_kafka),
    6: ("a worker frozen past its session timeout", worker_frozen),
}

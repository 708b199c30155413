"""The stack under test, started by the project's own code and stopped whatever happens:
a three-broker KRaft cluster on free ports (`KafkaCluster`, with a proxied listener per
broker for fault 5), a redis-server of its own, two workers (`WorkerProcess`: `availability
worker`) and two APIs (`ApiServer`: `availability api`). API "b" reaches Kafka only through
the cluster's proxies.

A supervisor restarts a worker that exits by itself, as Kubernetes restarts a pod (a fenced
worker stops with an error and must be restarted), and keeps a note of each. An API that
exits is noted, not restarted: `ApiServer` starts on a new port, which the load would not
know."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol

from api.streaming.topics_admin import ensure_topics
from availability import CompiledRules, rules_from_object
from loadtests.workload import RULES
from tests.integration.helpers import wait_readiness
from tests.support.kafka_cluster import KafkaCluster
from tests.support.server import ApiServer
from tests.support.streaming import Stack, WorkerProcess

from .redis_server import RedisServer

PARTITIONS: Final = 4
READY_TIMEOUT_S: Final = 240.0  # a cold start: three JVMs, two workers' recoveries
SUPERVISE_EVERY_S: Final = 0.5


class Restartable(Protocol):
    @property
    def running(self) -> bool: ...

    def log_tail(self) -> str: ...


@dataclass
class Restart:
    at: float  # wall clock
    name: str
    last_words: str  # the log lines before the exit that say why


class Harness:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.cluster = KafkaCluster(root / "kafka", proxied=True)
        self.redis = RedisServer(root / "redis")
        self.stack = Stack(
            partitions=PARTITIONS, kafka=self.cluster.bootstrap, redis_url=self.redis.url
        )
        self.rules_path = root / "rules.json"
        self.rules = CompiledRules(rules_from_object(RULES))
        # Three replicas, always: with the default (min(3, brokers seen)), a process that
        # starts while a broker is down, or before the cluster's metadata shows all three,
        # would make a topic of two.
        replicas = {"AVAIL_REPLICATION_FACTOR": str(self.cluster.brokers)}
        self.workers = [
            WorkerProcess(self.stack, root / f"worker{n}", env=replicas) for n in (1, 2)
        ]
        env = self.stack.env | replicas
        on_proxies = env | {"AVAIL_KAFKA_BOOTSTRAP": self.cluster.proxied_bootstrap}
        self.apis = [
            ApiServer(root / "api-a", env=env, rules_file=self.rules_path),
            ApiServer(root / "api-b", env=on_proxies, rules_file=self.rules_path),
        ]
        self.restarts: list[Restart] = []
        self._unsupervised: set[int] = set()  # ids of processes a fault is handling
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._supervisor = threading.Thread(
            target=self._supervise, name="chaos-supervisor", daemon=True
        )

    def names(self) -> dict[int, str]:
        named: dict[int, str] = {id(w): f"worker {n}" for n, w in enumerate(self.workers, 1)}
        return named | {id(a): f"api {'ab'[n]}" for n, a in enumerate(self.apis)}

    def start(self) -> Harness:
        self.root.mkdir(parents=True, exist_ok=True)
        self.rules_path.write_text(json.dumps(RULES))
        self.cluster.start()
        self.redis.start()
        self._create_topics()
        for worker in self.workers:
            worker.start()
        for api in self.apis:
            api.start()
        for api in self.apis:
            wait_readiness(api, 200, timeout_s=READY_TIMEOUT_S)
        self._supervisor.start()
        return self

    def _create_topics(self) -> None:
        """Every topic of the deployment with three replicas, once the cluster can make
        them: a broker the metadata shows may not take replicas yet."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                asyncio.run(
                    ensure_topics(
                        self.stack.kafka,
                        self.stack.names,
                        PARTITIONS,
                        replication_factor=self.cluster.brokers,
                    )
                )
                return
            except Exception as exc:  # not yet: asked again, until the deadline
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the topics were never made: {exc!r}") from exc
                time.sleep(1)

    def stop(self) -> None:
        """Everything started, in the reverse order; each step runs whatever the last did."""
        self._stop.set()
        if self._supervisor.is_alive():
            self._supervisor.join(timeout=30)
        steps: list[Callable[[], object]] = [a.stop for a in self.apis]
        steps += [w.stop for w in self.workers]
        for step in [*steps, self.redis.stop, self.cluster.stop]:
            with contextlib.suppress(Exception):
                step()

    @contextlib.contextmanager
    def unsupervised(self, *processes: Restartable) -> Iterator[None]:
        """While a fault kills and restarts these itself, the supervisor leaves them be."""
        with self._lock:
            self._unsupervised |= {id(p) for p in processes}
        try:
            yield
        finally:
            with self._lock:
                self._unsupervised -= {id(p) for p in processes}

    def _supervise(self) -> None:
        names = self.names()
        gone: set[int] = set()  # APIs already noted
        while not self._stop.wait(SUPERVISE_EVERY_S):
            with self._lock:
                processes: list[WorkerProcess | ApiServer] = [*self.workers, *self.apis]
                for process in processes:
                    if id(process) in self._unsupervised | gone or process.running:
                        continue
                    words = _last_words(process.log_tail())
                    self.restarts.append(Restart(time.time(), names[id(process)], words))
                    if isinstance(process, WorkerProcess):
                        process.start()
                    else:
                        gone.add(id(process))


def _last_words(tail: str) -> str:
    """The lines of a log tail that say why a process stopped."""
    marks = ("error", "Error", "fenced", "Fenced", "stops", "Traceback")
    lines = [line.strip()[:240] for line in tail.splitlines() if any(m in line for m in marks)]
    if not lines:
        lines = tail.splitlines()[-1:]
    return " | ".join(lines[-3:])

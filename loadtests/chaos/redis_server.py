"""A redis-server of the suite's own on a free loopback port, never the shared one on 6379
(other work runs tests against it). It keeps nothing on disk (no RDB, no AOF), so a
restart is Redis coming back with its data gone: fault 4."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Final

import redis

from tests.support.server import LOOPBACK, free_port, kill

START_TIMEOUT_S: Final = 20.0


class RedisServer:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{LOOPBACK}:{self.port}/0"

    def start(self) -> RedisServer:
        self.root.mkdir(parents=True, exist_ok=True)
        args = ["redis-server", "--bind", LOOPBACK, "--port", str(self.port)]
        args += ["--save", "", "--appendonly", "no", "--dir", str(self.root)]
        with (self.root / "redis.log").open("ab") as log:
            self._process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._answers():
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not answer PING")
            time.sleep(0.1)
        return self

    def _answers(self) -> bool:
        client = redis.Redis(host=LOOPBACK, port=self.port, socket_connect_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: with no persistence, everything it held is gone."""
        kill(self._process)
        self._process = None

    def stop(self) -> None:
        self.kill()  # nothing to save: SIGKILL is as good as a shutdown

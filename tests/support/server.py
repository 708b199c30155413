"""Run `availability serve` (or `availability api`) as a real process on a free loopback
port, for tests over HTTP.

The server gets exactly the AVAIL_* variables a test gives it (none leak in from the
environment the tests run in), writes its output to a log file whose tail is shown when it
fails to start, and is stopped politely (SIGTERM, then SIGKILL after a timeout) or killed
outright with `kill()` to test what survives a crash.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import httpx

LOOPBACK: Final = "127.0.0.1"
REPO_ROOT: Final = Path(__file__).resolve().parents[2]
START_TIMEOUT_S: Final = 30.0
STOP_TIMEOUT_S: Final = 10.0
POLL_INTERVAL_S: Final = 0.05
LOG_TAIL_CHARS: Final = 4000


class ServerFailed(RuntimeError):
    """The server exited or never became ready; the message holds the tail of its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test runner's environment minus every AVAIL_* variable, plus `env`."""
    clean = {name: value for name, value in os.environ.items() if not name.startswith("AVAIL_")}
    clean["PYTHONUNBUFFERED"] = "1"
    clean.update(env or {})
    return clean


def cli_command(*args: str) -> list[str]:
    """The `availability` command, run by the interpreter that runs the tests."""
    return [sys.executable, "-m", "service.cli", *args]


def run_cli(
    args: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 20.0
) -> subprocess.CompletedProcess[str]:
    """Run the command to completion (for the refusals that must exit at once)."""
    return subprocess.run(
        cli_command(*args),
        env=child_env(env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def terminate(
    process: subprocess.Popen[bytes] | None, timeout: float = STOP_TIMEOUT_S
) -> int | None:
    """SIGTERM, then SIGKILL if it hasn't exited within `timeout`; returns the exit code."""
    if process is None:
        return None
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def kill(process: subprocess.Popen[bytes] | None) -> None:
    """SIGKILL: the process gets no chance to flush or close anything."""
    if process is not None:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.wait()


class Server:
    """One `availability serve` process on one data directory; restartable on the same one."""

    # Started means this answers 200.
    ready_path = "/readyz"

    def __init__(
        self,
        data_dir: Path,
        *,
        env: Mapping[str, str] | None = None,
        rules_file: Path | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.data_dir = data_dir
        self.env = dict(env or {})
        self.rules_file = rules_file
        self.extra_args = list(extra_args)
        self.log_path = data_dir.with_name(f"{data_dir.name}.log")
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def client(self, key: str | None = None, timeout: float = 10.0) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout, trust_env=False)

    def start(self, rules_file: Path | None = None) -> Server:
        """Start on a fresh free port and wait for /readyz; `rules_file` overrides the default."""
        if self.running:
            raise RuntimeError("the server is already running")
        rules = rules_file or self.rules_file
        self.port = free_port()
        args = self.command_args()
        if rules is not None:
            args += ["--rules", str(rules)]
        with self.log_path.open("ab") as log:
            log.write(f"\n--- start: {' '.join(args)}\n".encode())
            log.flush()
            self._process = subprocess.Popen(
                cli_command(*args),
                env=child_env(self.env),
                cwd=REPO_ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._wait_ready()
        return self

    def command_args(self) -> list[str]:
        """The command line, but for --rules."""
        args = ["serve", "--host", LOOPBACK, "--port", str(self.port)]
        return [*args, "--data-dir", str(self.data_dir), *self.extra_args]

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        with httpx.Client(base_url=self.url, timeout=1.0, trust_env=False) as probe:
            while time.monotonic() < deadline:
                if not self.running:
                    raise ServerFailed(f"the server exited at start:\n{self.log_tail()}")
                try:
                    if probe.get(self.ready_path).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(POLL_INTERVAL_S)
        self.kill()
        raise ServerFailed(f"not ready after {START_TIMEOUT_S} s:\n{self.log_tail()}")

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int | None:
        """SIGTERM, then SIGKILL if it hasn't exited within `timeout`; returns the exit code."""
        code, self._process = terminate(self._process, timeout), None
        return code

    def kill(self) -> None:
        """SIGKILL: the process gets no chance to flush or close anything."""
        kill(self._process)
        self._process = None

    def restart(self, rules_file: Path | None = None) -> Server:
        self.stop()
        return self.start(rules_file)

    def log(self) -> str:
        """Everything the process (and its restarts) wrote to stdout and stderr."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_tail(self) -> str:
        return self.log()[-LOG_TAIL_CHARS:] or "(no log)"


class ApiServer(Server):
    """One `availability api` process (the streaming mode). It keeps nothing on disk:
    `data_dir` only names its log. It counts as started once /healthz answers, since being
    ready also takes Kafka, Redis and the workers, which each test arranges itself."""

    ready_path = "/healthz"

    def command_args(self) -> list[str]:
        return ["api", "--host", LOOPBACK, "--port", str(self.port), *self.extra_args]


@contextmanager
def server_pool() -> Iterator[list[Server]]:
    """Collect servers a test or fixture starts and stop every one of them afterwards."""
    servers: list[Server] = []
    try:
        yield servers
    finally:
        for server in servers:
            server.stop()

"""Start and stop local processes for benchmarks and load tests: the embedded server, a
bare ASGI baseline, and wrk; and read a process's CPU time. Everything binds and targets
127.0.0.1 only."""

from __future__ import annotations

import contextlib
import http.client
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")  # the unit of a process's CPU times in /proc


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_ready(port: int, path: str = "/readyz", timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(HOST, port, timeout=1)
        try:
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()  # an unclosed socket is a ResourceWarning, an error under pytest
        time.sleep(0.1)
    raise RuntimeError(f"nothing answered 200 on {HOST}:{port}{path} within {timeout} s")


@contextlib.contextmanager
def process(
    args: list[str],
    port: int,
    ready_path: str,
    env: dict[str, str] | None = None,
    log: Path | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    out = open(log, "wb") if log else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(args, env={**os.environ, **(env or {})}, stdout=out, stderr=out)
    try:
        wait_ready(port, ready_path)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            out.close()  # type: ignore[union-attr]


def embedded_server(
    port: int, data_dir: Path, rules_file: Path, log: Path | None = None
) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    args = [
        sys.executable,
        "-m",
        "service.cli",
        "serve",
        "--host",
        HOST,
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        "--rules",
        str(rules_file),
    ]
    return process(args, port, "/readyz", env={"AVAIL_LOG_LEVEL": "warning"}, log=log)


def bare_asgi_server(port: int) -> contextlib.AbstractContextManager[subprocess.Popen[bytes]]:
    args = [
        sys.executable,
        "-m",
        "uvicorn",
        "loadtests.bare_asgi:app",
        "--host",
        HOST,
        "--port",
        str(port),
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    return process(args, port, "/")


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    print("bench: installing wrk from Debian's packages", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    result = subprocess.run(["apt-get", "install", "-y", "-q", "wrk"], env=env, capture_output=True)
    if result.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"], env=env, check=True, capture_output=True
        )
    found = shutil.which("wrk")
    if not found:
        raise RuntimeError("wrk is not installed and could not be installed")
    return found


@dataclass(frozen=True)
class WrkResult:
    requests_per_second: float
    p50_ms: float
    p99_ms: float
    errors: int


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _millis(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not match:
        raise ValueError(f"unexpected wrk latency {text!r}")
    return float(match[1]) * _UNITS[match[2]]


def run_wrk(
    url: str, seconds: int, connections: int, script: Path | None = None, rate_note: str = ""
) -> WrkResult:
    args = [ensure_wrk(), "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        args += ["-s", str(script)]
    output = subprocess.run([*args, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output)[1])  # type: ignore[index]
    p50 = _millis(re.search(r"\s50%\s+(\S+)", output)[1])  # type: ignore[index]
    p99 = _millis(re.search(r"\s99%\s+(\S+)", output)[1])  # type: ignore[index]
    errors = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        errors += int(non_2xx[1])
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return WrkResult(rps, p50, p99, errors)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, all its threads (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS

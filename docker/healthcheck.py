"""Docker HEALTHCHECK of the one image: which probe depends on the process it runs.

`availability api` and `serve` answer GET /healthz on their HTTP port; `availability worker`
serves no HTTP API, only its Prometheus metrics on AVAIL_METRICS_PORT. PID 1's command line
says which one this container runs. Standard library only: it runs in the image's venv.
"""

from __future__ import annotations

import os
import sys
import urllib.request
from pathlib import Path

TIMEOUT_S = 4.0  # under the HEALTHCHECK --timeout of 5 s, so a hang reports as a failure


def command_line() -> list[str]:
    raw = Path("/proc/1/cmdline").read_bytes()
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def flag(args: list[str], name: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def probe_url(args: list[str]) -> str:
    if "worker" in args:
        return f"http://127.0.0.1:{os.environ.get('AVAIL_METRICS_PORT', '9102')}/metrics"
    port = flag(args, "--port") or os.environ.get("AVAIL_PORT", "8000")
    return f"http://127.0.0.1:{port}/healthz"


def main() -> int:
    url = probe_url(command_line())
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response:
            return 0 if response.status == 200 else 1
    except OSError as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

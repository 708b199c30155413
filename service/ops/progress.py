"""Progress lines on stderr for the long runs of the operator commands: at most one a
second, so a run over millions of records neither floods the terminal nor goes silent."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Final, TextIO
from urllib.parse import urlsplit

PROGRESS_EVERY_S: Final = 1.0


class Progress:
    def __init__(
        self,
        command: str,
        stream: TextIO | None = None,
        every_s: float = PROGRESS_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._command = command
        self._stream = stream or sys.stderr
        self._every_s = every_s
        self._clock = clock
        self._started = clock()
        self._last = self._started

    @property
    def elapsed_s(self) -> float:
        return self._clock() - self._started

    def tick(self, text: str) -> None:
        """Print `text` when a second has passed since the last line."""
        now = self._clock()
        if now - self._last >= self._every_s:
            self._last = now
            self.say(text)

    def say(self, text: str) -> None:
        print(f"{self._command}: {text} ({self.elapsed_s:.1f} s)", file=self._stream, flush=True)


def fail(command: str, text: str) -> None:
    """Every refusal and failure says what was wrong, on stderr."""
    print(f"availability {command}: {text}", file=sys.stderr, flush=True)


def described(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def without_password(url: str) -> str:
    """A Redis URL as it may be printed: the password of `redis://:secret@host` left out."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return parts._replace(netloc=netloc).geturl()

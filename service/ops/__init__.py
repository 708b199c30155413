"""Operator commands of the streaming mode: replay the dead letters, rebuild the Redis read
model, show one SKU's history. Each prints its progress to stderr on long runs and ends
with a summary; each returns the exit code (0 done, 1 failed or timed out, 2 bad usage)."""

from .dlq_replay import ReplayOptions, replay_dead_letters
from .rebuild import rebuild_read_model
from .sku_history import HistoryOptions, show_sku_history

__all__ = [
    "HistoryOptions",
    "ReplayOptions",
    "rebuild_read_model",
    "replay_dead_letters",
    "show_sku_history",
]

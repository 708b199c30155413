"""Operator commands: replay the dead letters, rebuild the Redis read model, show one SKU's
history (the streaming mode), and import an ERP snapshot (either mode). Each prints its
progress to stderr on long runs and ends with a summary; each returns the exit code (0
done, 1 failed or timed out, 2 bad usage; import-snapshot: 3 when rows were refused)."""

from .dlq_replay import ReplayOptions, replay_dead_letters
from .import_snapshot import ImportOptions, import_snapshot
from .rebuild import rebuild_read_model
from .sku_history import HistoryOptions, show_sku_history

__all__ = [
    "HistoryOptions",
    "ImportOptions",
    "ReplayOptions",
    "import_snapshot",
    "rebuild_read_model",
    "replay_dead_letters",
    "show_sku_history",
]

"""The `availability` command: `serve` (embedded), `api` and `worker` (streaming), and the
streaming mode's operator commands `dlq-replay`, `rebuild-read-model` and `sku-history`."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from api import is_loopback
from availability import AvailabilityError, InvalidRules, Settings
from availability.ids import is_sku

from .settings import (
    EMBEDDED_DATA_DIR,
    WORKER_DATA_DIR,
    WORKER_TABLES_FOLDER,
    SettingsError,
    settings_from,
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="availability",
        description="Real-time inventory availability per SKU, location and channel.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser(
        "serve", help="the embedded mode: API and engine in one process, no Kafka, no Redis"
    )
    serve.add_argument("--host", help="address to bind (AVAIL_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (AVAIL_PORT, default 8000)")
    serve.add_argument(
        "--data-dir",
        dest="data_dir",
        help=f"state directory (AVAIL_DATA_DIR, default {EMBEDDED_DATA_DIR})",
    )
    serve.add_argument(
        "--rules", dest="rules_file", help="rules document, JSON or YAML, applied at start"
    )
    api = commands.add_parser(
        "api", help="the streaming mode's HTTP API: reads Redis, writes events and rules to Kafka"
    )
    api.add_argument("--host", help="address to bind (AVAIL_HOST, default 127.0.0.1)")
    api.add_argument("--port", type=int, help="port (AVAIL_PORT, default 8000)")
    api.add_argument(
        "--rules",
        dest="rules_file",
        help="rules document, JSON or YAML, published at start when it differs from the last",
    )
    worker = commands.add_parser(
        "worker", help="the streaming mode's stream processor (faust) on Kafka, publishing to Redis"
    )
    worker.add_argument(
        "--data-dir",
        dest="data_dir",
        help=f"table state directory (AVAIL_DATA_DIR, default {WORKER_DATA_DIR}): the tables go "
        f"in its {WORKER_TABLES_FOLDER}/ folder, and a directory holding anything else is refused",
    )
    _add_operator_commands(commands)
    _add_import_command(commands)
    return parser


OPERATOR_COMMANDS = frozenset(
    {"dlq-replay", "rebuild-read-model", "sku-history", "import-snapshot"}
)
DEFAULT_REBUILD_TIMEOUT_S = 300.0  # a partition of a few million SKUs republishes in minutes


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def _moment(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not an ISO 8601 time: {text!r} (e.g. 2026-11-22T10:00:00Z)"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _sku(text: str) -> str:
    if not is_sku(text):
        raise argparse.ArgumentTypeError(f"not a SKU: {text!r} (1 to 64 of A-Z a-z 0-9 . _ : -)")
    return text


def _add_operator_commands(commands: Any) -> None:
    replay = commands.add_parser(
        "dlq-replay",
        help="streaming mode: produce dead letters back to their source topics, after a fix",
        description="Read inventory.dlq from where the last replay ended (consumer group "
        "<AVAIL_APP_ID>-dlq-replay, committed after each acknowledged batch) and produce each "
        "dead letter's original bytes and key back to its source_topic (acks=all, idempotent). "
        "Running it twice replays only newer dead letters; a letter replayed twice anyway is "
        "a duplicate by its event_id. Letters without an inventory source_topic are reported "
        "and never produced.",
    )
    replay.add_argument(
        "--dry-run", action="store_true", help="count and show reasons; produce and commit nothing"
    )
    replay.add_argument(
        "--reason-contains",
        metavar="TEXT",
        help="replay only letters whose reason contains TEXT; the others stay for a later run",
    )
    replay.add_argument(
        "--limit", type=_positive_int, metavar="N", help="replay at most N letters this run"
    )
    replay.add_argument(
        "--from-beginning",
        action="store_true",
        help="read the whole DLQ (as far as retention keeps it), not from the last replay",
    )
    rebuild = commands.add_parser(
        "rebuild-read-model",
        help="streaming mode: have the running workers republish every partition to Redis",
        description="Clear the ready marks of the partitions, so that the running workers "
        "republish every SKU of them, and wait until every one is marked ready again. SKU "
        "answers are kept meanwhile (a SKU missing from Redis answers 503, never 0); "
        "/readyz answers 503 until it ends.",
    )
    rebuild.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=DEFAULT_REBUILD_TIMEOUT_S,
        metavar="SECONDS",
        help=f"give up (exit 1) after this long (default {DEFAULT_REBUILD_TIMEOUT_S:g})",
    )
    rebuild.add_argument(
        "--partition",
        type=int,
        action="append",
        metavar="P",
        help="only this partition (repeatable); default: all",
    )
    history = commands.add_parser(
        "sku-history",
        help="streaming mode: a SKU's events, documents and published positions, for support",
        description="Print the SKU's events from its partition of every inventory topic, read "
        "from the start of each topic (so only as far back as the topics' retention keeps "
        "them), in the order Kafka received them, marking dead-lettered and duplicate ones; "
        "then its documents from the worker's table and its positions as published in Redis.",
    )
    history.add_argument("sku", type=_sku, help="the SKU")
    history.add_argument("--json", dest="as_json", action="store_true", help="machine output")
    history.add_argument(
        "--since",
        type=_moment,
        metavar="TIME",
        help="only events that occurred at or after TIME (ISO 8601; UTC when no offset)",
    )


def _add_import_command(commands: Any) -> None:
    command = commands.add_parser(
        "import-snapshot",
        help="send an ERP stock snapshot (CSV or NDJSON rows sku, location, counted, "
        "counted_at) to a running server, in parts, and print its report",
    )
    command.add_argument("file", type=Path, metavar="FILE")
    command.add_argument(
        "--url", help="the server (default http://AVAIL_HOST:AVAIL_PORT, 127.0.0.1:8000)"
    )
    command.add_argument(
        "--key", help="an API key with `write` (default: AVAIL_CLIENT_KEY, if set)"
    )
    command.add_argument(
        "--snapshot-id",
        dest="snapshot_id",
        help="the snapshot's id (default: made from the file's SHA-256)",
    )
    command.add_argument(
        "--format",
        dest="fmt",
        choices=["csv", "ndjson"],
        help="the file's format (default: ndjson for .ndjson and .jsonl files, else csv)",
    )
    command.add_argument(
        "--scope",
        choices=["partial", "full"],
        default="partial",
        help="full: at each location the file names, the positions it does not list are "
        "counted as 0 (default partial: left as they are)",
    )
    command.add_argument(
        "--rows-per-request",
        dest="rows_per_request",
        type=_positive_int,
        help="rows sent in each request (default 20,000)",
    )


def _run_operator_command(args: argparse.Namespace, settings: Settings) -> int:
    from .ops import (
        HistoryOptions,
        ImportOptions,
        ReplayOptions,
        import_snapshot,
        rebuild_read_model,
        replay_dead_letters,
        show_sku_history,
    )

    if args.command == "import-snapshot":
        url = args.url or f"http://{settings.host}:{settings.port}"
        key = args.key or os.environ.get("AVAIL_CLIENT_KEY") or None
        return import_snapshot(
            ImportOptions(
                args.file, url, key, args.snapshot_id, args.fmt, args.rows_per_request, args.scope
            )
        )
    # The client libraries' own info lines would drown the progress lines.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    if args.command == "dlq-replay":
        options = ReplayOptions(args.dry_run, args.reason_contains, args.limit, args.from_beginning)
        return asyncio.run(replay_dead_letters(settings, options))
    if args.command == "rebuild-read-model":
        return rebuild_read_model(settings, args.partition, args.timeout)
    return asyncio.run(
        show_sku_history(settings, HistoryOptions(args.sku, args.as_json, args.since))
    )


def refuse_open_bind(settings: Settings) -> str | None:
    """SPEC 8: with no keys the server binds loopback only."""
    if not settings.api_keys and not is_loopback(settings.host):
        return (
            f"refusing to bind {settings.host} without API keys: anyone who can reach it could"
            " change stock. Set AVAIL_API_KEYS (KEY:SCOPE[+SCOPE...]) or bind 127.0.0.1."
        )
    return None


def _serve(settings: Settings) -> int:
    from .embedded_app import embedded_app
    from .http_server import serve_http
    from .rules_file import load_rules_file

    rules = load_rules_file(settings.rules_file) if settings.rules_file else None
    return serve_http(embedded_app(settings, rules), settings)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = settings_from(os.environ, args)
    except SettingsError as exc:
        print(f"availability: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # A worker serves no API, only its metrics, so the rule of SPEC 8 is the servers'.
    refusal = refuse_open_bind(settings) if args.command in {"serve", "api"} else None
    if refusal:
        print(f"availability: {refusal}", file=sys.stderr)
        return 2
    if args.command in OPERATOR_COMMANDS:
        return _run_operator_command(args, settings)
    try:
        if args.command == "serve":
            return _serve(settings)
        if args.command == "api":
            from .streaming_api import run_api

            return run_api(settings)
        if args.command == "worker":
            from .worker import run_worker

            return run_worker(settings)
    except InvalidRules as exc:
        print(f"availability: invalid rules: {exc}", file=sys.stderr)
        return 2
    except SettingsError as exc:  # a worker's data directory not its own, Kafka it can't use
        print(f"availability: {exc}", file=sys.stderr)
        return 2
    except AvailabilityError as exc:  # topics a worker cannot use as they are
        print(f"availability: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    return 2


if __name__ == "__main__":
    sys.exit(main())

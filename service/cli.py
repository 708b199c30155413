"""The `availability` command: `serve` (embedded), `api` and `worker` (streaming)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from api import is_loopback
from availability import InvalidRules, Settings

from .settings import SettingsError, settings_from


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
        "--data-dir", dest="data_dir", help="state directory (AVAIL_DATA_DIR, default ./var)"
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
        "--data-dir", dest="data_dir", help="table state directory (AVAIL_DATA_DIR, default ./var)"
    )
    return parser


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
    return 2


if __name__ == "__main__":
    sys.exit(main())

"""Build the one frozen Settings of a process from AVAIL_* variables, then flags.

Every setting here is in the README's settings table and in helm/values.yaml.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path

from api import parse_api_keys
from availability import Settings, Windows
from availability.settings import Secret
from availability.timeutil import MICROS_PER_HOUR

# The two modes never share a default directory: a worker drops its tables after an unclean
# stop and refuses a directory holding anything else (service/worker.py), such as the
# embedded store, which stays where it always was.
EMBEDDED_DATA_DIR = "./var"
WORKER_DATA_DIR = "./var/worker"
WORKER_TABLES_FOLDER = "worker-tables"  # in a worker's data directory: all it ever deletes


class SettingsError(ValueError):
    """A setting has a value the service can't use; the message names it."""


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    text = env.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {text!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    text = env.get(name, "").strip().lower()
    if text == "":
        return default
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise SettingsError(f"{name} must be true or false, got {text!r}")


def _secret(env: Mapping[str, str], name: str) -> Secret | None:
    """A secret from `<name>_FILE` (a mounted Kubernetes Secret: its content, without the
    trailing newline) or from `name` itself."""
    path = env.get(f"{name}_FILE")
    if path:
        try:
            return Secret(Path(path).read_text().rstrip("\r\n"))
        except OSError as exc:
            raise SettingsError(f"{name}_FILE names a file that can't be read: {exc}") from None
    value = env.get(name)
    return Secret(value) if value else None


def _readable_file(env: Mapping[str, str], name: str) -> str | None:
    path = env.get(name)
    if not path:
        return None
    if not Path(path).is_file():
        raise SettingsError(f"{name} names no readable file: {path!r}")
    return path


KAFKA_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


def _kafka_security(env: Mapping[str, str]) -> dict[str, object]:
    protocol = env.get("AVAIL_KAFKA_SECURITY_PROTOCOL", "PLAINTEXT").upper()
    if protocol not in KAFKA_PROTOCOLS:
        raise SettingsError(
            f"AVAIL_KAFKA_SECURITY_PROTOCOL must be one of {', '.join(KAFKA_PROTOCOLS)}, "
            f"got {protocol!r}"
        )
    mechanism = env.get("AVAIL_KAFKA_SASL_MECHANISM", "PLAIN").upper()
    if mechanism not in SASL_MECHANISMS:
        raise SettingsError(
            f"AVAIL_KAFKA_SASL_MECHANISM must be one of {', '.join(SASL_MECHANISMS)}, "
            f"got {mechanism!r}"
        )
    username = env.get("AVAIL_KAFKA_SASL_USERNAME", "")
    password = _secret(env, "AVAIL_KAFKA_SASL_PASSWORD")
    if protocol.startswith("SASL") and not (username and password):
        raise SettingsError(
            f"AVAIL_KAFKA_SECURITY_PROTOCOL={protocol} needs AVAIL_KAFKA_SASL_USERNAME and "
            "AVAIL_KAFKA_SASL_PASSWORD (or AVAIL_KAFKA_SASL_PASSWORD_FILE)"
        )
    cert, key = (
        _readable_file(env, "AVAIL_KAFKA_CERT_FILE"),
        _readable_file(env, "AVAIL_KAFKA_KEY_FILE"),
    )
    if bool(cert) != bool(key):
        raise SettingsError("AVAIL_KAFKA_CERT_FILE and AVAIL_KAFKA_KEY_FILE go together")
    return {
        "kafka_security_protocol": protocol,
        "kafka_sasl_mechanism": mechanism,
        "kafka_sasl_username": username,
        "kafka_sasl_password": password,
        "kafka_ca_file": _readable_file(env, "AVAIL_KAFKA_CA_FILE"),
        "kafka_cert_file": cert,
        "kafka_key_file": key,
        "kafka_check_hostname": _bool(env, "AVAIL_KAFKA_CHECK_HOSTNAME", True),
    }


def _default_data_dir(args: argparse.Namespace | None) -> str:
    return WORKER_DATA_DIR if getattr(args, "command", None) == "worker" else EMBEDDED_DATA_DIR


def settings_from(env: Mapping[str, str], args: argparse.Namespace | None = None) -> Settings:
    """AVAIL_* variables give the values; flags given on the command line win."""
    try:
        api_keys = parse_api_keys(env.get("AVAIL_API_KEYS", ""))
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    values = {
        "host": env.get("AVAIL_HOST", "127.0.0.1"),
        "port": _int(env, "AVAIL_PORT", 8000, minimum=1),
        "data_dir": env.get("AVAIL_DATA_DIR") or _default_data_dir(args),
        "rules_file": env.get("AVAIL_RULES_FILE") or None,
        "api_keys": api_keys,
        "windows": Windows(
            dedup_us=_int(env, "AVAIL_DEDUP_WINDOW_HOURS", 168, minimum=1) * MICROS_PER_HOUR,
            reconciliation_us=_int(env, "AVAIL_RECONCILIATION_WINDOW_HOURS", 48, minimum=1)
            * MICROS_PER_HOUR,
        ),
        "sync_writes": _bool(env, "AVAIL_SYNC_WRITES", False),
        "cache_skus": _int(env, "AVAIL_CACHE_SKUS", 100_000, minimum=1),
        "feed_retention": _int(env, "AVAIL_FEED_RETENTION", 100_000, minimum=1),
        "log_level": env.get("AVAIL_LOG_LEVEL", "info").lower(),
        "kafka_bootstrap": env.get("AVAIL_KAFKA_BOOTSTRAP", "127.0.0.1:9092"),
        **_kafka_security(env),
        "redis_url": env.get("AVAIL_REDIS_URL", "redis://127.0.0.1:6379/0"),
        "redis_read_url": env.get("AVAIL_REDIS_READ_URL", ""),
        "redis_password": _secret(env, "AVAIL_REDIS_PASSWORD"),
        "redis_ca_file": _readable_file(env, "AVAIL_REDIS_CA_FILE"),
        "partitions": _int(env, "AVAIL_PARTITIONS", 8, minimum=1),
        "topic_prefix": env.get("AVAIL_TOPIC_PREFIX", ""),
        "app_id": env.get("AVAIL_APP_ID", "availability"),
        "standby_replicas": _int(env, "AVAIL_STANDBY_REPLICAS", 1),
        "replication_factor": _int(env, "AVAIL_REPLICATION_FACTOR", 0, minimum=0),
        "metrics_port": _int(env, "AVAIL_METRICS_PORT", 9102, minimum=1),
    }
    if args is not None:
        for flag in ("host", "port", "data_dir", "rules_file"):
            given = getattr(args, flag, None)
            if given is not None:
                values[flag] = given
    if values["log_level"] not in {"critical", "error", "warning", "info", "debug"}:
        raise SettingsError(f"AVAIL_LOG_LEVEL must be a logging level, got {values['log_level']!r}")
    return Settings(**values)  # type: ignore[arg-type]

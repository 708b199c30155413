"""`availability worker`: create the topics, guard the local state, run the faust worker.

Local table state is trusted only after a clean shutdown. A killed worker may have written
its local RocksDB ahead of the changelog (faust sends changelog records after the local
write); its redelivered events would then look like duplicates and never reach the
changelog, and a later owner of the partition would miss them. So after an unclean stop
the local tables are dropped and rebuilt from the changelog, which is the truth.

Dropping is only safe for what the worker made itself. It keeps its tables in a folder of
its own inside AVAIL_DATA_DIR, marked with its app id when it creates it, and drops only
that folder's contents. A data directory holding anything else (the embedded mode's store,
a home directory's files) is refused at start and left as it was.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import socket
import uuid
from pathlib import Path

import faust
import msgspec
from aiokafka.errors import KafkaError

from api.streaming.kafka_security import (
    faust_credentials,
    kafka_client_options,
    refusal,
    refused_by_security,
)
from api.streaming.topics_admin import TopicSpec, ensure_topics
from availability import Settings
from availability.topics import Names, state_changelog_topic
from streams.app import Worker

from .settings import WORKER_TABLES_FOLDER, SettingsError

log = logging.getLogger("availability.worker")
TABLES_FOLDER = WORKER_TABLES_FOLDER  # the worker's own folder in AVAIL_DATA_DIR: faust's datadir
OWNER_MARKER = ".availability-worker"  # in TABLES_FOLDER, written when the worker makes it
CLEAN_MARKER = ".clean-shutdown"  # in TABLES_FOLDER, written at a clean stop
# Before TABLES_FOLDER, a worker used AVAIL_DATA_DIR itself as faust's datadir: faust's
# version folders (v1/tables/...) and the clean marker, nothing else.
EARLIER_VERSION_DIR = re.compile(r"v[0-9]+")
# Never foreign: the worker's folder, and the lost+found at the root of a volume mounted
# as the data directory.
IGNORED = frozenset({TABLES_FOLDER, "lost+found"})
NAMES_SHOWN = 5  # of a refused directory's entries, in the message


class KafkaUnusable(SettingsError):
    """The worker could not use Kafka at start: unreachable, or the security settings
    (TLS, SASL) are not the brokers'."""


class DataDirRefused(SettingsError):
    """AVAIL_DATA_DIR holds what the worker did not make; nothing was touched. Point
    AVAIL_DATA_DIR (or --data-dir) at an empty or missing directory, or at a worker's own."""


class _Owner(msgspec.Struct, frozen=True):
    app_id: str
    owner: str = "availability worker"


def prepare_data_dir(data_dir: str, app_id: str) -> Path:
    """The worker's own folder in `data_dir`, ready to be faust's datadir: made and marked
    when missing, its tables dropped when the last stop was not clean. Raises
    DataDirRefused, before changing anything, when `data_dir` holds something else."""
    root = Path(data_dir)
    own = root / TABLES_FOLDER
    others = _foreign_entries(root)
    # An earlier worker's tables, kept only after a clean stop: that marker is this
    # service's alone, so it tells them from another faust app's.
    adopt = _earlier_worker_layout(root, others) and CLEAN_MARKER in others
    if others and not adopt:
        raise DataDirRefused(_foreign_message(root, others))
    marked = _check_owner(own, app_id)
    clashes = [name for name in others if adopt and (own / name).exists()]
    if clashes:
        raise DataDirRefused(
            f"{root} and {own} both hold {', '.join(clashes)}; nothing was touched. Keep the "
            f"ones you want in {own} and delete the others, or start on an empty directory"
        )
    if not marked:
        own.mkdir(parents=True, exist_ok=True)
        (own / OWNER_MARKER).write_bytes(msgspec.json.encode(_Owner(app_id)))
        log.info("made the worker's table folder %s", own)
    if adopt:
        _adopt(root, own, others)
    clean = own / CLEAN_MARKER
    if clean.exists():
        clean.unlink()
        return own
    stale = [path for path in own.iterdir() if path.name != OWNER_MARKER]
    if stale:
        log.warning(
            "last stop was not clean: dropping local tables in %s, recovering from changelogs",
            own,
        )
        for path in stale:
            _remove(path)
    return own


def _foreign_entries(root: Path) -> list[str]:
    """Names in `root` other than the worker's own folder (and a file system's lost+found);
    refuses a `root` that isn't a directory."""
    if not root.exists():
        return []
    if not root.is_dir():
        raise DataDirRefused(
            f"the worker's data directory {root} is not a directory; set AVAIL_DATA_DIR "
            "(or --data-dir) to an empty or missing directory"
        )
    return sorted(path.name for path in root.iterdir() if path.name not in IGNORED)


def _earlier_worker_layout(root: Path, names: list[str]) -> bool:
    """Whether `names` are what an earlier worker left in `root`: faust's version folders
    and its clean marker, nothing else."""
    for name in names:
        path = root / name
        if name == CLEAN_MARKER:
            if path.is_symlink() or not path.is_file():
                return False
        elif not (
            EARLIER_VERSION_DIR.fullmatch(name)
            and not path.is_symlink()
            and path.is_dir()
            and {child.name for child in path.iterdir()} <= {"tables"}
        ):
            return False
    return bool(names)


def _check_owner(own: Path, app_id: str) -> bool:
    """Whether `own` is a worker's folder of this app id; False when missing or empty (a
    worker stopped between making it and marking it). Refuses anything else."""
    if not own.exists() and not own.is_symlink():
        return False
    if own.is_symlink() or not own.is_dir():
        raise DataDirRefused(
            f"{own} is not a folder the worker made; nothing was touched. Remove it, or set "
            "AVAIL_DATA_DIR (or --data-dir) to another directory"
        )
    marker = own / OWNER_MARKER
    if not marker.is_file():
        if not any(own.iterdir()):
            return False
        raise DataDirRefused(
            f"{own} has no {OWNER_MARKER} marker, so it may not be a worker's tables and the "
            "worker will not drop it after an unclean stop; nothing was touched. If it holds "
            "a worker's tables, delete it (they are restored from the changelog); otherwise "
            "set AVAIL_DATA_DIR (or --data-dir) to another directory"
        )
    try:
        found = msgspec.json.decode(marker.read_bytes(), type=_Owner)
    except (OSError, msgspec.DecodeError) as exc:
        raise DataDirRefused(
            f"{marker} can't be read ({exc}); nothing was touched. If {own} holds a worker's "
            "tables, delete it (they are restored from the changelog)"
        ) from None
    if found.app_id != app_id:
        # Its tables hold another app's changelog offsets: never recover from them.
        raise DataDirRefused(
            f"{own} holds the tables of app id {found.app_id!r}, not {app_id!r} (AVAIL_APP_ID); "
            "nothing was touched. Set AVAIL_DATA_DIR (or --data-dir) to another directory, or "
            f"delete {own} if that app's tables are no longer wanted"
        )
    return True


def _foreign_message(root: Path, names: list[str]) -> str:
    shown = ", ".join(names[:NAMES_SHOWN]) + (", ..." if len(names) > NAMES_SHOWN else "")
    what, or_else = "which the worker did not make", ""
    if (root / "CURRENT").is_file():
        what = "a RocksDB store (the embedded mode's, `availability serve`?)"
    elif _earlier_worker_layout(root, names):
        what = "tables an earlier version of the worker left after an unclean stop"
        or_else = ", or delete them: the worker restores its tables from the changelog"
    return (
        f"refusing the worker's data directory {root}: it holds {shown}, {what}. A worker "
        f"drops its tables after an unclean stop, so it keeps them in a {TABLES_FOLDER}/ "
        "folder of a directory holding nothing else; nothing was touched. Set AVAIL_DATA_DIR "
        f"(or --data-dir) to an empty or missing directory{or_else}"
    )


def _adopt(root: Path, own: Path, names: list[str]) -> None:
    """Move an earlier version's tables into the worker's folder; the clean marker last,
    so a stop in between leaves a directory this adopts again."""
    for name in sorted(names, key=lambda name: name == CLEAN_MARKER):
        (root / name).rename(own / name)
    log.info("moved an earlier worker's tables (%s) into %s", ", ".join(names), own)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def run_worker(settings: Settings) -> int:
    """Raises DataDirRefused, before reaching Kafka, on a data directory not the worker's."""
    tables_dir = prepare_data_dir(settings.data_dir, settings.app_id)
    instance_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    # The table's changelog too: created here, its replicas are checked at every start.
    changelog = {state_changelog_topic(settings.app_id): TopicSpec(settings.partitions, True)}
    security = kafka_client_options(settings)
    try:
        replication = asyncio.run(
            ensure_topics(
                settings.kafka_bootstrap,
                Names(settings.topic_prefix),
                settings.partitions,
                replication_factor=settings.replication_factor,
                more=changelog,
                security=security,
            )
        )
    except (KafkaError, OSError, TimeoutError) as exc:
        reason = asyncio.run(refused_by_security(settings.kafka_bootstrap, security))
        raise KafkaUnusable(refusal(settings.kafka_bootstrap, security, reason or exc)) from None
    # faust's datadir is the worker's own folder: all it writes stays inside it.
    worker = Worker(
        msgspec.structs.replace(settings, data_dir=str(tables_dir), replication_factor=replication),
        instance_id,
        kafka_client_options(settings),
        faust_credentials(settings),
    )
    runner = faust.Worker(worker.app, loglevel=settings.log_level.upper(), quiet=True)
    code = 1
    try:
        runner.execute_from_commandline()
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else 1
    if worker.failed is not None:
        code = code or 1  # its local tables are ahead of the changelog: never trust them
    if code == 0:
        (tables_dir / CLEAN_MARKER).touch()
    return code

"""A worker deletes only what it made: its tables live in a folder of its own in
AVAIL_DATA_DIR, marked with its app id, and only that folder's contents are dropped after an
unclean stop. Anything else in the directory (the embedded store, a stranger's file) makes
it refuse to start and leave the directory as it was. The two modes' defaults differ."""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable
from pathlib import Path

import msgspec
import pytest

from availability import Settings
from embedded import EmbeddedEngine
from service.cli import main
from service.settings import settings_from
from service.worker import (
    CLEAN_MARKER,
    OWNER_MARKER,
    TABLES_FOLDER,
    DataDirRefused,
    prepare_data_dir,
    run_worker,
)
from tests.unit.factories import SKU, T0_US, receipt

APP_ID = "availability"
NOW_US = T0_US + 10 * 60 * 1_000_000  # after the receipt, inside the clock's skew
Tree = dict[str, bytes | None]  # relative path -> file bytes, None for a folder


def tree(root: Path, skip: Path | None = None) -> Tree:
    """Every path under `root` (except `skip` and what is under it) with its bytes."""
    found: Tree = {}
    for path in sorted(root.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        found[str(path.relative_to(root))] = None if path.is_dir() else path.read_bytes()
    return found


def write_tables(own: Path) -> None:
    """What faust leaves in its datadir: a version folder holding a table's RocksDB."""
    table = own / "v1" / "tables" / "sku-state-0.db"
    table.mkdir(parents=True)
    (table / "000007.sst").write_bytes(b"table records")


def settings_for(command: str, env: dict[str, str] | None = None, **flags: str) -> Settings:
    return settings_from(env or {}, argparse.Namespace(command=command, **flags))


# -- the defaults ---------------------------------------------------------------------------


def test_the_embedded_mode_and_the_worker_never_share_a_default_directory() -> None:
    embedded, worker = settings_for("serve").data_dir, settings_for("worker").data_dir
    assert (embedded, worker) == ("./var", "./var/worker")


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_data_dir_given_is_used_as_it_is(command: str) -> None:
    assert settings_for(command, {"AVAIL_DATA_DIR": "/srv/a"}).data_dir == "/srv/a"
    assert settings_for(command, {"AVAIL_DATA_DIR": "/srv/a"}, data_dir="/b").data_dir == "/b"
    # Empty is unset, as for every other setting: never the current directory.
    assert settings_for(command, {"AVAIL_DATA_DIR": ""}).data_dir.startswith("./var")


def write_embedded_state(settings: Settings) -> str:
    """An embedded store with one SKU in it, as `availability serve` leaves it; its event id."""
    engine = EmbeddedEngine(settings, lambda: NOW_US)
    engine.open()
    event = receipt(40)
    asyncio.run(engine.submit([event], [msgspec.json.encode(event)]))
    engine.close()
    return event.event_id


def test_the_embedded_state_survives_a_worker_started_with_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    event_id = write_embedded_state(settings_for("serve"))
    embedded_dir = tmp_path / "var"
    worker_dir = Path(settings_for("worker").data_dir).resolve()
    before = tree(embedded_dir, skip=worker_dir)
    assert before, "the embedded store wrote nothing"

    own = prepare_data_dir(settings_for("worker").data_dir, APP_ID)  # a first start
    write_tables(own)
    prepare_data_dir(settings_for("worker").data_dir, APP_ID)  # after an unclean stop

    assert tree(embedded_dir, skip=worker_dir) == before
    embedded = EmbeddedEngine(settings_for("serve"), lambda: NOW_US)
    embedded.open()
    try:
        state = embedded.store.load(SKU)
    finally:
        embedded.close()
    assert state is not None
    assert event_id in state.seen


# -- what the worker refuses, untouched ----------------------------------------------------


def embedded_store(root: Path) -> None:
    write_embedded_state(Settings(data_dir=str(root)))


def strangers_file(root: Path) -> None:
    root.mkdir()
    (root / "notes.txt").write_text("my notes")


def strangers_folder(root: Path) -> None:
    (root / "photos").mkdir(parents=True)
    (root / "photos" / "cat.jpg").write_bytes(b"\xff\xd8")


def strangers_file_beside_the_workers_tables(root: Path) -> None:
    write_tables(prepare_data_dir(str(root), APP_ID))
    (root / "notes.txt").write_text("my notes")


def an_earlier_workers_unclean_tables(root: Path) -> None:
    write_tables(root)  # AVAIL_DATA_DIR was faust's datadir, and no clean marker


@pytest.mark.parametrize(
    ("make", "says"),
    [
        (strangers_file, "it holds notes.txt, which the worker did not make"),
        (strangers_folder, "it holds photos, which the worker did not make"),
        (strangers_file_beside_the_workers_tables, "notes.txt"),
        (embedded_store, "the embedded mode's"),
        (an_earlier_workers_unclean_tables, "it holds v1, tables an earlier version"),
    ],
)
def test_a_directory_holding_what_the_worker_did_not_make_is_refused_untouched(
    tmp_path: Path, make: Callable[[Path], None], says: str
) -> None:
    root = tmp_path / "data"
    make(root)
    before = tree(root)

    with pytest.raises(DataDirRefused) as refused:
        prepare_data_dir(str(root), APP_ID)

    assert tree(root) == before
    message = str(refused.value)
    assert says in message
    assert "nothing was touched" in message
    assert "Set AVAIL_DATA_DIR (or --data-dir) to an empty or missing directory" in message


def test_a_workers_folder_without_its_marker_is_refused_untouched(tmp_path: Path) -> None:
    own = tmp_path / "data" / TABLES_FOLDER
    write_tables(own)
    before = tree(tmp_path)

    with pytest.raises(DataDirRefused, match=f"has no {OWNER_MARKER} marker") as refused:
        prepare_data_dir(str(tmp_path / "data"), APP_ID)

    assert tree(tmp_path) == before
    assert "AVAIL_DATA_DIR (or --data-dir)" in str(refused.value)


def test_another_app_ids_tables_are_refused_untouched(tmp_path: Path) -> None:
    write_tables(prepare_data_dir(str(tmp_path), "other-app"))
    before = tree(tmp_path)

    with pytest.raises(DataDirRefused, match="app id 'other-app', not 'availability'"):
        prepare_data_dir(str(tmp_path), APP_ID)

    assert tree(tmp_path) == before


def test_a_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "data").write_text("not a directory")
    with pytest.raises(DataDirRefused, match="is not a directory"):
        prepare_data_dir(str(tmp_path / "data"), APP_ID)
    assert (tmp_path / "data").read_text() == "not a directory"


# -- what the worker takes, and what it drops -----------------------------------------------


@pytest.mark.parametrize("exists", [False, True], ids=["missing", "empty"])
def test_an_empty_or_missing_directory_gets_the_workers_marked_folder(
    tmp_path: Path, exists: bool
) -> None:
    root = tmp_path / "new" / "data"
    if exists:
        root.mkdir(parents=True)

    own = prepare_data_dir(str(root), APP_ID)

    assert own == root / TABLES_FOLDER
    assert [path.name for path in root.iterdir()] == [TABLES_FOLDER]
    assert [path.name for path in own.iterdir()] == [OWNER_MARKER]
    assert APP_ID in (own / OWNER_MARKER).read_text()


def test_an_unclean_stop_drops_only_the_workers_own_tables(tmp_path: Path) -> None:
    # A volume mounted as the data directory has lost+found: not the worker's, not a refusal.
    (tmp_path / "lost+found").mkdir()
    (tmp_path / "lost+found" / "#1234").write_bytes(b"fsck found this")
    own = prepare_data_dir(str(tmp_path), APP_ID)
    write_tables(own)
    marker = (own / OWNER_MARKER).read_bytes()

    assert prepare_data_dir(str(tmp_path), APP_ID) == own  # no clean marker: killed

    assert [path.name for path in own.iterdir()] == [OWNER_MARKER]
    assert (own / OWNER_MARKER).read_bytes() == marker
    assert (tmp_path / "lost+found" / "#1234").read_bytes() == b"fsck found this"


def test_a_clean_stop_keeps_the_tables(tmp_path: Path) -> None:
    own = prepare_data_dir(str(tmp_path), APP_ID)
    write_tables(own)
    before = tree(own)
    (own / CLEAN_MARKER).touch()  # as run_worker does when faust's worker exits 0

    prepare_data_dir(str(tmp_path), APP_ID)

    assert tree(own) == before  # the clean marker is used up: the next stop must earn it


def test_an_empty_unmarked_folder_is_taken(tmp_path: Path) -> None:
    # A worker stopped between making its folder and marking it: nothing there to lose.
    (tmp_path / TABLES_FOLDER).mkdir()
    own = prepare_data_dir(str(tmp_path), APP_ID)
    assert (own / OWNER_MARKER).is_file()


def test_an_earlier_workers_clean_tables_move_into_its_folder(tmp_path: Path) -> None:
    write_tables(tmp_path)  # AVAIL_DATA_DIR was faust's datadir before TABLES_FOLDER
    before = tree(tmp_path / "v1")
    (tmp_path / CLEAN_MARKER).touch()

    own = prepare_data_dir(str(tmp_path), APP_ID)

    assert [path.name for path in tmp_path.iterdir()] == [TABLES_FOLDER]
    assert tree(own / "v1") == before  # clean: kept, no restore from the changelog
    assert sorted(path.name for path in own.iterdir()) == [OWNER_MARKER, "v1"]


# -- through the entry points, before any Kafka --------------------------------------------


def test_run_worker_refuses_before_reaching_kafka(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_kafka(*_: object) -> None:
        raise AssertionError("the worker reached Kafka")

    monkeypatch.setattr("service.worker.ensure_topics", no_kafka)
    strangers_file(tmp_path / "home")

    with pytest.raises(DataDirRefused):
        run_worker(Settings(data_dir=str(tmp_path / "home"), kafka_bootstrap="127.0.0.1:1"))

    assert [path.name for path in (tmp_path / "home").iterdir()] == ["notes.txt"]
    assert (tmp_path / "home" / "notes.txt").read_text() == "my notes"


def test_the_worker_command_says_what_to_do_and_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("service.worker.ensure_topics", None)  # never reached
    for name in ("AVAIL_DATA_DIR", "AVAIL_APP_ID", "AVAIL_LOG_LEVEL"):
        monkeypatch.delenv(name, raising=False)
    strangers_file(tmp_path / "home")

    assert main(["worker", "--data-dir", str(tmp_path / "home")]) == 2

    error = capsys.readouterr().err
    assert error.startswith(f"availability: refusing the worker's data directory {tmp_path}")
    assert "Set AVAIL_DATA_DIR (or --data-dir)" in error
    assert (tmp_path / "home" / "notes.txt").read_text() == "my notes"

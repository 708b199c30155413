"""Redis as a retailer runs it: TLS (`rediss://`, the server's certificate checked against a
CA file), an ACL user whose password comes from a file, the default user disabled, and a
replica that the API reads answers from. A worker and an API process run against it."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from tests.support.certificates import make_certificates
from tests.support.receipts import receive_and_wait
from tests.support.server import ApiServer, free_port, terminate
from tests.support.streaming import Stack, WorkerProcess, wait_until

from .helpers import wait_readiness

pytestmark = pytest.mark.integration

USER, PASSWORD = "avail", "s3cret-pw-4e1d"
SKUS = [f"TLS-{n}" for n in range(12)]


class SecureRedis:
    """A TLS primary (plus a loopback plain port its replica follows) and a replica, with
    the default user off and one ACL user."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tls_port, self.plain_port, self.replica_port = free_port(), free_port(), free_port()
        self.ca = root / "ca.pem"
        self._processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> SecureRedis:
        make_certificates(self.root)
        users = f"user default off\nuser {USER} on >{PASSWORD} ~* &* +@all\n"
        primary = self.root / "primary.conf"
        primary.write_text(
            f"bind 127.0.0.1\nport {self.plain_port}\ntls-port {self.tls_port}\n"
            f"tls-cert-file {self.root / 'server.pem'}\ntls-key-file {self.root / 'server.key'}\n"
            f"tls-ca-cert-file {self.ca}\ntls-auth-clients no\n"
            f'save ""\nappendonly no\ndir {self.root}\n{users}'
        )
        replica = self.root / "replica.conf"
        replica.write_text(
            f"bind 127.0.0.1\nport {self.replica_port}\nreplicaof 127.0.0.1 {self.plain_port}\n"
            f"masteruser {USER}\nmasterauth {PASSWORD}\n"
            f'save ""\nappendonly no\ndir {self.root}\ndbfilename replica.rdb\n{users}'
        )
        for conf in (primary, replica):
            with (self.root / f"{conf.stem}.log").open("ab") as log:
                self._processes.append(
                    subprocess.Popen(["redis-server", str(conf)], stdout=log, stderr=log)
                )
        assert wait_until(self._replicating, 30), (self.root / "replica.log").read_text()
        return self

    def _replicating(self) -> bool:
        try:
            with self.replica() as client:
                return bool(client.info("replication").get("master_link_status") == "up")
        except redis.RedisError:
            return False

    def primary(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=self.tls_port,
            username=USER,
            password=PASSWORD,
            ssl=True,
            ssl_ca_certs=str(self.ca),
        )

    def replica(self) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1", port=self.replica_port, username=USER, password=PASSWORD
        )

    def stop(self) -> None:
        for process in self._processes:
            terminate(process)


@pytest.fixture
def secure_redis(tmp_path: Path) -> Iterator[SecureRedis]:
    (tmp_path / "redis").mkdir()
    started = SecureRedis(tmp_path / "redis").start()
    yield started
    started.stop()


def test_tls_an_acl_user_and_answers_read_from_a_replica(
    secure_redis: SecureRedis,
    fresh_stack: Stack,
    start_api: Callable[..., ApiServer],
    rules_path: Path,
    tmp_path: Path,
) -> None:
    password_file = tmp_path / "redis-password"
    password_file.write_text(PASSWORD + "\n")  # as a mounted Secret may end
    on_secure_redis = {
        "AVAIL_REDIS_URL": f"rediss://{USER}@127.0.0.1:{secure_redis.tls_port}/0",
        "AVAIL_REDIS_PASSWORD_FILE": str(password_file),
        "AVAIL_REDIS_CA_FILE": str(secure_redis.ca),
    }
    worker = WorkerProcess(fresh_stack, tmp_path / "worker", env=on_secure_redis).start()
    try:
        reads_on_replica = f"redis://{USER}@127.0.0.1:{secure_redis.replica_port}/0"
        api = start_api(
            rules_file=rules_path, env=on_secure_redis | {"AVAIL_REDIS_READ_URL": reads_on_replica}
        )
        wait_readiness(api, 200, timeout_s=90)
        with api.client() as http:
            assert receive_and_wait(http, SKUS, qty=7), worker.log_tail()

        # The worker wrote the primary over TLS; the answers were read from the replica.
        with secure_redis.primary() as primary:
            assert primary.hget(f"{fresh_stack.names.redis_namespace}:{{{SKUS[0]}}}", "v")
        with secure_redis.replica() as replica:
            assert replica.info("commandstats").get("cmdstat_hmget", {}).get("calls", 0) > 0
        assert worker.running, worker.log_tail()
    finally:
        worker.stop()
    for log in (worker.log_tail(1_000_000), api.log()):
        assert PASSWORD not in log


def test_a_missing_ca_file_is_refused_with_its_setting_named(
    fresh_stack: Stack, tmp_path: Path
) -> None:
    missing = str(tmp_path / "no-such-ca.pem")
    worker = WorkerProcess(
        fresh_stack, tmp_path / "worker", env={"AVAIL_REDIS_CA_FILE": missing}
    ).start()
    assert wait_until(lambda: not worker.running, 30)
    assert worker.stop() == 2
    assert f"AVAIL_REDIS_CA_FILE names no readable file: {missing!r}" in worker.log_tail()

"""A Kafka broker (KRaft) on 127.0.0.1 whose client listener is SASL_SSL, as managed Kafka
services have it: TLS with a certificate from a CA the test makes, and SASL users for PLAIN,
SCRAM-SHA-256 and SCRAM-SHA-512. The broker talks to itself on a plaintext listener."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Final

from .certificates import make_certificates
from .kafka_cluster import START_TIMEOUT_S, java_command
from .server import free_port, kill

# user -> password; PLAIN users live in the listener's JAAS line, SCRAM users in the
# cluster's metadata (written when the storage is formatted).
USERS: Final = {"alice": "alice-pw-91c3", "bob": "bob-pw-2d7e"}
SCRAM: Final = ("SCRAM-SHA-256", "SCRAM-SHA-512")

_CONFIG: Final = """\
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:{controller_port}
listeners=INTERNAL://127.0.0.1:{internal_port},SASL_SSL://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=INTERNAL://127.0.0.1:{internal_port},SASL_SSL://127.0.0.1:{port}
listener.security.protocol.map=INTERNAL:PLAINTEXT,SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
inter.broker.listener.name=INTERNAL
controller.listener.names=CONTROLLER
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_ssl.plain.sasl.jaas.config={plain_login} required {plain_users};
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config={scram_login} required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config={scram_login} required;
ssl.keystore.type=PEM
ssl.keystore.location={keystore}
ssl.client.auth=none
log.dirs={data}
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
log.segment.bytes=16777216
log.cleaner.dedupe.buffer.size=8388608
"""


class SecureKafka:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port, self.internal_port, self.controller_port = free_port(), free_port(), free_port()
        self.ca = root / "ca.pem"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> SecureKafka:
        make_certificates(self.root)
        keystore = self.root / "server-keystore.pem"
        keystore.write_text(
            (self.root / "server.key").read_text() + (self.root / "server.pem").read_text()
        )
        plain = " ".join(f'user_{user}="{password}"' for user, password in USERS.items())
        config = self.root / "server.properties"
        config.write_text(
            _CONFIG.format(
                port=self.port,
                internal_port=self.internal_port,
                controller_port=self.controller_port,
                plain_login="org.apache.kafka.common.security.plain.PlainLoginModule",
                scram_login="org.apache.kafka.common.security.scram.ScramLoginModule",
                plain_users=plain,
                keystore=keystore,
                data=self.root / "data",
            )
        )
        scram = [
            arg
            for mechanism in SCRAM
            for user, password in USERS.items()
            for arg in ("--add-scram", f"{mechanism}=[name={user},password={password}]")
        ]
        format_storage = [*java_command(self.root), "kafka.tools.StorageTool", "format"]
        subprocess.run(
            [*format_storage, "-t", "c2VjdXJlLWNsdXN0ZXIx", "-c", str(config), *scram],
            check=True,
            capture_output=True,
        )
        with (self.root / "kafka.out").open("ab") as out:
            self._process = subprocess.Popen(
                [*java_command(self.root), "kafka.Kafka", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self._wait_for_listener()
        return self

    def _wait_for_listener(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        log = self.root / "kafka.out"
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"the broker exited: {log.read_text()[-3000:]}")
            server_log = self.root / "logs" / "server.log"
            if server_log.exists() and "Kafka Server started" in server_log.read_text(
                "utf-8", "replace"
            ):
                return
            time.sleep(0.5)
        raise RuntimeError(f"the broker did not start within {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        kill(self._process)
        self._process = None

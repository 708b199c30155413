"""A Kafka cluster of several brokers (KRaft, each a broker and a controller) on 127.0.0.1,
from the jars `scripts/services.sh install kafka` fetched, in a folder of its own: what
production's shape looks like to the service (three replicas, two in sync), for the tests
that stop a broker. Ports are free ones, so it runs beside the single test broker.

    python -m tests.support.kafka_cluster DIR    starts one in DIR until Ctrl-C
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Final

from aiokafka.admin import AIOKafkaAdminClient

from .server import REPO_ROOT, free_port, kill, terminate

KAFKA_LIBS: Final = REPO_ROOT / ".services" / "kafka" / "libs"
LOG4J: Final = REPO_ROOT / "scripts" / "kafka" / "log4j.properties"
START_TIMEOUT_S: Final = 120.0

_CONFIG: Final = """\
process.roles=broker,controller
node.id={node}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs={data}
num.partitions=1
default.replication.factor={brokers}
min.insync.replicas=2
auto.create.topics.enable=false
offsets.topic.replication.factor={brokers}
offsets.topic.num.partitions=4
transaction.state.log.replication.factor={brokers}
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=4
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.segment.bytes=16777216
log.cleaner.dedupe.buffer.size=8388608
controlled.shutdown.enable=true
"""


class KafkaCluster:
    def __init__(self, root: Path, brokers: int = 3) -> None:
        self.root = root
        self.brokers = brokers
        self.ports = [free_port() for _ in range(brokers)]
        self.controller_ports = [free_port() for _ in range(brokers)]
        self._processes: list[subprocess.Popen[bytes] | None] = [None] * brokers

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    def start(self) -> KafkaCluster:
        if not KAFKA_LIBS.is_dir():
            raise RuntimeError("no Kafka jars: run `bash scripts/services.sh install kafka`")
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        voters = ",".join(
            f"{node + 1}@127.0.0.1:{port}" for node, port in enumerate(self.controller_ports)
        )
        for node in range(self.brokers):
            folder = self.root / f"broker{node + 1}"
            shutil.rmtree(folder, ignore_errors=True)
            (folder / "data").mkdir(parents=True)
            (folder / "server.properties").write_text(
                _CONFIG.format(
                    node=node + 1,
                    voters=voters,
                    port=self.ports[node],
                    controller_port=self.controller_ports[node],
                    data=folder / "data",
                    brokers=self.brokers,
                )
            )
            config = str(folder / "server.properties")
            subprocess.run(
                [
                    *java_command(folder),
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    cluster_id,
                    "-c",
                    config,
                ],
                check=True,
                capture_output=True,
            )
        for node in range(self.brokers):
            self.start_broker(node)
        self.wait_until_whole()
        return self

    def start_broker(self, node: int) -> None:
        folder = self.root / f"broker{node + 1}"
        with (folder / "kafka.out").open("ab") as out:
            self._processes[node] = subprocess.Popen(
                [*java_command(folder), "kafka.Kafka", str(folder / "server.properties")],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def stop_broker(self, node: int, *, hard: bool = False) -> None:
        """Stop one broker: SIGTERM (a controlled shutdown), or SIGKILL when `hard`."""
        process, self._processes[node] = self._processes[node], None
        if hard:
            kill(process)
        else:
            terminate(process, timeout=60)

    def stop(self) -> None:
        for node in range(self.brokers):
            self.stop_broker(node, hard=True)

    def wait_until_whole(self) -> None:
        """Every running broker is in the cluster's metadata."""
        running = sum(process is not None for process in self._processes)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if asyncio.run(self._brokers_seen()) >= running:
                return
            for node, process in enumerate(self._processes):
                if process is not None and process.poll() is not None:
                    raise RuntimeError(f"broker {node + 1} exited: {self.log_tail(node)}")
            time.sleep(1)
        raise RuntimeError(f"the cluster did not form within {START_TIMEOUT_S:.0f} s")

    async def _brokers_seen(self) -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=5000)
        try:
            await admin.start()
            return len((await admin.describe_cluster())["brokers"])
        except Exception:  # not formed yet: asked again
            return 0
        finally:
            await admin.close()

    def log_tail(self, node: int, chars: int = 3000) -> str:
        path = self.root / f"broker{node + 1}" / "kafka.out"
        return path.read_text(errors="replace")[-chars:] if path.exists() else "(no log)"


def java_command(folder: Path) -> list[str]:
    return [
        "java",
        "-Xmx384m",
        "-Xms128m",
        "-XX:+UseG1GC",
        f"-Dkafka.logs.dir={folder / 'logs'}",
        f"-Dlog4j.configuration=file:{LOG4J}",
        "-cp",
        f"{KAFKA_LIBS}/*",
    ]


if __name__ == "__main__":
    cluster = KafkaCluster(Path(sys.argv[1])).start()
    print(f"brokers: {cluster.bootstrap} (Ctrl-C stops them)", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        cluster.stop()

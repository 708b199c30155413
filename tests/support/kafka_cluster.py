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

from .server import LOOPBACK, REPO_ROOT, free_port, kill, terminate
from .tcp_proxy import TcpProxy

KAFKA_LIBS: Final = REPO_ROOT / ".services" / "kafka" / "libs"
LOG4J: Final = REPO_ROOT / "scripts" / "kafka" / "log4j.properties"
START_TIMEOUT_S: Final = 120.0

_CONFIG: Final = """\
process.roles=broker,controller
node.id={node}
controller.quorum.voters={voters}
listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}{proxied}
advertised.listeners=PLAINTEXT://127.0.0.1:{port}{advertised_proxied}
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,PROXIED:PLAINTEXT
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
    def __init__(self, root: Path, brokers: int = 3, *, proxied: bool = False) -> None:
        self.root = root
        self.brokers = brokers
        self.ports = [free_port() for _ in range(brokers)]
        self.controller_ports = [free_port() for _ in range(brokers)]
        # With `proxied`: each broker's PROXIED listener, and the proxy port it advertises.
        self.proxied_ports = [free_port() for _ in range(brokers)] if proxied else []
        self.proxies = [TcpProxy(free_port(), (LOOPBACK, port)) for port in self.proxied_ports]
        self._processes: list[subprocess.Popen[bytes] | None] = [None] * brokers

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{port}" for port in self.ports)

    @property
    def proxied_bootstrap(self) -> str:
        """The bootstrap of a client that must reach the cluster through the proxies only."""
        if not self.proxies:
            raise RuntimeError("the cluster was made without proxied=True")
        return ",".join(f"127.0.0.1:{proxy.port}" for proxy in self.proxies)

    def _listeners(self, node: int) -> dict[str, str]:
        if not self.proxies:
            return {"proxied": "", "advertised_proxied": ""}
        return {
            "proxied": f",PROXIED://127.0.0.1:{self.proxied_ports[node]}",
            "advertised_proxied": f",PROXIED://127.0.0.1:{self.proxies[node].port}",
        }

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
                    **self._listeners(node),
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
        for proxy in self.proxies:
            proxy.start()
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
        for proxy in self.proxies:
            proxy.stop()

    def cut_proxies(self) -> None:
        """Clients of `proxied_bootstrap` lose every connection and can make none."""
        for proxy in self.proxies:
            proxy.stop()

    def restore_proxies(self) -> None:
        for proxy in self.proxies:
            proxy.start()

    async def busiest_leader(self, prefix: str) -> int:
        """The index of the broker leading the most partitions of the topics whose names
        start with `prefix`: the one whose loss moves the most leaders."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            names = [t for t in await admin.list_topics() if t.startswith(prefix)]
            described = await admin.describe_topics(names)
            leaders = [p["leader"] for t in described for p in t["partitions"]]
        finally:
            await admin.close()
        node = max(set(leaders), key=leaders.count)
        return int(node) - 1  # node ids are 1, 2, 3

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

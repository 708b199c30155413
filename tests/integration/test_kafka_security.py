"""Kafka as managed services run it: a SASL_SSL listener with a certificate from the test's
own CA, and SASL users for PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512. The worker (faust and its
own clients), the API and the operator commands all connect; a wrong password or an
unknown CA stops the worker at start with a message that says what to check."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from api.streaming import ensure_topics
from api.streaming.kafka_security import kafka_client_options
from availability.topics import Names
from service.settings import settings_from
from tests.support.holds import hold_body, line
from tests.support.receipts import receive_and_wait
from tests.support.secure_kafka import USERS, SecureKafka
from tests.support.server import ApiServer, ServerFailed, run_cli
from tests.support.streaming import Stack, WorkerProcess, wait_until

from .helpers import wait_readiness

pytestmark = pytest.mark.integration

SKUS = [f"SEC-{n}" for n in range(10)]


@pytest.fixture(scope="module")
def secure_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureKafka]:
    started = SecureKafka(tmp_path_factory.mktemp("secure-kafka")).start()
    yield started
    started.stop()


def over_sasl_ssl(
    kafka: SecureKafka, password_file: Path, mechanism: str = "SCRAM-SHA-512"
) -> dict[str, str]:
    return {
        "AVAIL_KAFKA_BOOTSTRAP": kafka.bootstrap,
        "AVAIL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "AVAIL_KAFKA_SASL_MECHANISM": mechanism,
        "AVAIL_KAFKA_SASL_USERNAME": "alice",
        "AVAIL_KAFKA_SASL_PASSWORD_FILE": str(password_file),
        "AVAIL_KAFKA_CA_FILE": str(kafka.ca),
    }


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_each_sasl_mechanism_connects(secure_kafka: SecureKafka, mechanism: str) -> None:
    settings = settings_from(
        {
            "AVAIL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "AVAIL_KAFKA_SASL_MECHANISM": mechanism,
            "AVAIL_KAFKA_SASL_USERNAME": "bob",
            "AVAIL_KAFKA_SASL_PASSWORD": USERS["bob"],
            "AVAIL_KAFKA_CA_FILE": str(secure_kafka.ca),
        }
    )
    names = Names(f"mech-{mechanism.lower()}-")
    security = kafka_client_options(settings)
    assert asyncio.run(ensure_topics(secure_kafka.bootstrap, names, 2, security=security)) == 1


def test_the_worker_the_api_and_the_operator_commands_work_over_sasl_ssl(
    secure_kafka: SecureKafka,
    fresh_stack: Stack,
    start_api: Callable[..., ApiServer],
    rules_path: Path,
    tmp_path: Path,
) -> None:
    password_file = tmp_path / "kafka-password"
    password_file.write_text(USERS["alice"] + "\n")
    env = over_sasl_ssl(secure_kafka, password_file)
    worker = WorkerProcess(fresh_stack, tmp_path / "worker", standby_replicas=0, env=env).start()
    try:
        api = start_api(rules_file=rules_path, env=env)
        wait_readiness(api, 200, timeout_s=120)
        with api.client() as http:
            assert receive_and_wait(http, SKUS, qty=5), worker.log_tail()
            held = http.post("/v1/holds", json=hold_body(line(SKUS[0], 2)))
            assert held.status_code == 201, held.text

        history = run_cli(["sku-history", SKUS[0]], env=fresh_stack.env | env, timeout=120)
        assert history.returncode == 0, history.stderr
        assert SKUS[0] in history.stdout
        assert worker.running, worker.log_tail()
    finally:
        worker.stop()
    for log in (worker.log_tail(1_000_000), api.log()):
        assert USERS["alice"] not in log


@pytest.mark.parametrize("wrong", ["password", "ca"])
def test_a_wrong_password_or_an_unknown_ca_stops_the_worker_saying_what_to_check(
    secure_kafka: SecureKafka, fresh_stack: Stack, tmp_path: Path, wrong: str
) -> None:
    password_file = tmp_path / "kafka-password"
    password_file.write_text("not-the-password" if wrong == "password" else USERS["alice"])
    env = over_sasl_ssl(secure_kafka, password_file)
    if wrong == "ca":
        del env["AVAIL_KAFKA_CA_FILE"]  # the system's CAs never signed the test's broker
    worker = WorkerProcess(fresh_stack, tmp_path / "worker", env=env).start()
    assert wait_until(lambda: not worker.running, 90), worker.log_tail()
    assert worker.stop() == 2
    said = worker.log_tail()
    assert f"cannot use Kafka at {secure_kafka.bootstrap} over SASL_SSL as 'alice'" in said
    assert "AVAIL_KAFKA_CA_FILE" in said
    assert "Traceback" not in said
    reason = "SaslAuthenticationFailed" if wrong == "password" else "CERTIFICATE_VERIFY_FAILED"
    assert reason in said


@pytest.mark.parametrize("wrong", ["password", "ca"])
def test_an_api_kafka_refuses_stops_saying_what_to_check(
    secure_kafka: SecureKafka, fresh_stack: Stack, tmp_path: Path, wrong: str
) -> None:
    """Refused, not out of reach: the API's own probe tells the two apart (an outage keeps
    it up, unready, retrying: tests/integration/test_streaming_api_health.py)."""
    password_file = tmp_path / "kafka-password"
    password_file.write_text("not-the-password" if wrong == "password" else USERS["alice"])
    env = over_sasl_ssl(secure_kafka, password_file)
    if wrong == "ca":
        del env["AVAIL_KAFKA_CA_FILE"]
    api = ApiServer(tmp_path / "api", env=fresh_stack.env | env)
    with contextlib.suppress(ServerFailed):  # it may stop before its first answer
        api.start()
    assert wait_until(lambda: not api.running, 60), api.log_tail()
    assert api.stop() != 0
    log = api.log()
    assert "cannot use Kafka at" in log
    assert "over SASL_SSL as 'alice' with SCRAM-SHA-512" in log
    assert "the API stops" in log
    reason = "SaslAuthenticationFailed" if wrong == "password" else "CERTIFICATE_VERIFY_FAILED"
    assert reason in log
    assert "not-the-password" not in log

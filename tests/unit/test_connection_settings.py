"""The Redis and Kafka connection settings: passwords from a file or the environment, never
printed; CA files that must exist; TLS options only where TLS is asked for; every refusal
names its setting."""

from __future__ import annotations

from pathlib import Path

import pytest

from api.streaming.kafka_security import faust_credentials, kafka_client_options
from service.settings import SettingsError, settings_from

URL = "rediss://avail@redis.internal:6380/0"


def test_a_password_file_gives_the_password_without_its_trailing_newline(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("pa ss\n")
    settings = settings_from({"AVAIL_REDIS_PASSWORD_FILE": str(secret)})
    assert settings.redis_options(URL)["password"] == "pa ss"
    assert "pa ss" not in repr(settings)


def test_a_password_from_the_environment_is_never_printed() -> None:
    settings = settings_from({"AVAIL_REDIS_PASSWORD": "hunter2"})
    assert settings.redis_options("redis://127.0.0.1:6379/0") == {"password": "hunter2"}
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings)


def test_an_unreadable_password_file_is_refused_with_its_setting_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="AVAIL_REDIS_PASSWORD_FILE names a file that can't"):
        settings_from({"AVAIL_REDIS_PASSWORD_FILE": str(tmp_path / "missing")})


def test_the_ca_file_is_used_over_tls_only(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    settings = settings_from({"AVAIL_REDIS_CA_FILE": str(ca)})
    assert settings.redis_options(URL) == {"ssl_ca_certs": str(ca)}
    # A plain connection takes no TLS option (redis-py would refuse it).
    assert settings.redis_options("redis://replica:6379/0") == {}


def test_a_missing_ca_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="AVAIL_REDIS_CA_FILE names no readable file"):
        settings_from({"AVAIL_REDIS_CA_FILE": str(tmp_path / "nope.pem")})


def test_answers_are_read_from_the_read_url_when_one_is_given() -> None:
    assert settings_from({}).redis_read_url == ""
    replica = "redis://replica:6379/0"
    assert settings_from({"AVAIL_REDIS_READ_URL": replica}).redis_read_url == replica


def test_plaintext_kafka_needs_no_option() -> None:
    settings = settings_from({})
    assert kafka_client_options(settings) == {}
    assert faust_credentials(settings) is None


def test_sasl_ssl_gives_every_client_the_same_login_and_tls(tmp_path: Path) -> None:
    secret = tmp_path / "kafka-password"
    secret.write_text("pw\n")
    settings = settings_from(
        {
            "AVAIL_KAFKA_SECURITY_PROTOCOL": "sasl_ssl",
            "AVAIL_KAFKA_SASL_MECHANISM": "scram-sha-512",
            "AVAIL_KAFKA_SASL_USERNAME": "svc",
            "AVAIL_KAFKA_SASL_PASSWORD_FILE": str(secret),
        }
    )
    options = kafka_client_options(settings)
    assert options["security_protocol"] == "SASL_SSL"
    assert (options["sasl_mechanism"], options["sasl_plain_username"]) == ("SCRAM-SHA-512", "svc")
    assert options["sasl_plain_password"] == "pw"
    assert options["ssl_context"].check_hostname
    credentials = faust_credentials(settings)
    assert (credentials.username, credentials.password) == ("svc", "pw")
    assert credentials.mechanism.value == "SCRAM-SHA-512"
    assert "pw'" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "refusal"),
    [
        ({"AVAIL_KAFKA_SECURITY_PROTOCOL": "TLS"}, "AVAIL_KAFKA_SECURITY_PROTOCOL must be one of"),
        ({"AVAIL_KAFKA_SASL_MECHANISM": "GSSAPI"}, "AVAIL_KAFKA_SASL_MECHANISM must be one of"),
        (
            {"AVAIL_KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "AVAIL_KAFKA_SASL_USERNAME": "svc"},
            "needs AVAIL_KAFKA_SASL_USERNAME and AVAIL_KAFKA_SASL_PASSWORD",
        ),
        ({"AVAIL_KAFKA_CA_FILE": "/nonexistent/ca.pem"}, "AVAIL_KAFKA_CA_FILE names no readable"),
    ],
    ids=["protocol", "mechanism", "no-password", "no-ca-file"],
)
def test_kafka_settings_that_cannot_work_are_refused_by_name(
    env: dict[str, str], refusal: str
) -> None:
    with pytest.raises(SettingsError, match=refusal):
        settings_from(env)


def test_a_client_certificate_needs_its_key(tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(SettingsError, match="AVAIL_KAFKA_CERT_FILE and AVAIL_KAFKA_KEY_FILE go"):
        settings_from({"AVAIL_KAFKA_CERT_FILE": str(cert)})

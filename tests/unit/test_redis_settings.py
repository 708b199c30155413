"""The Redis connection settings: a password from a file or the environment, never printed;
a CA file that must exist; TLS options only for rediss:// URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

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

"""How every Kafka client of the service connects: the API's producer and consumers, the
worker's faust app and its own consumers, the operator commands. One place, so that none of
them can be left on PLAINTEXT when the cluster asks for TLS and SASL."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import Any, Final

import faust
from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError, SaslAuthenticationFailed, UnsupportedSaslMechanismError
from aiokafka.helpers import create_ssl_context

from availability import Settings

PROBE_TIMEOUT_S: Final = 15.0
# The broker version from which a failed SASL login is answered with its reason
# (SaslAuthenticate) rather than a closed connection.
SASL_AUTHENTICATE_SINCE: Final = (1, 0, 0)


def ssl_context(settings: Settings) -> ssl.SSLContext:
    """The brokers' certificates checked against AVAIL_KAFKA_CA_FILE (by default the
    system's CAs), with the client's own certificate when one is set."""
    context: ssl.SSLContext = create_ssl_context(
        cafile=settings.kafka_ca_file,
        certfile=settings.kafka_cert_file,
        keyfile=settings.kafka_key_file,
    )
    context.check_hostname = settings.kafka_check_hostname
    return context


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka's producers, consumers and admin clients."""
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return {}
    options: dict[str, Any] = {"security_protocol": protocol}
    if protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = ssl_context(settings)
    if protocol.startswith("SASL"):
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": str(settings.kafka_sasl_password),
        }
    return options


def faust_credentials(settings: Settings) -> Any:
    """The same, as faust takes it (`broker_credentials`); None for PLAINTEXT."""
    protocol = settings.kafka_security_protocol
    context = ssl_context(settings) if protocol in ("SSL", "SASL_SSL") else None
    if protocol.startswith("SASL"):
        return faust.SASLCredentials(
            username=settings.kafka_sasl_username,
            password=str(settings.kafka_sasl_password),
            mechanism=settings.kafka_sasl_mechanism,
            ssl_context=context,
        )
    if context is not None:
        return faust.SSLCredentials(context)
    return None


def refusal(bootstrap: str, options: Mapping[str, Any], exc: BaseException | str) -> str:
    """What an operator reads when Kafka refused a client: where, how it connected, what to
    check. (A broker closes the connection of a client whose SASL login failed, so
    aiokafka's own words are often only "connection closed".)"""
    how = options.get("security_protocol", "PLAINTEXT")
    if "sasl_mechanism" in options:
        how += f" as {options['sasl_plain_username']!r} with {options['sasl_mechanism']}"
    return (
        f"cannot use Kafka at {bootstrap} over {how}: {exc}. Check AVAIL_KAFKA_BOOTSTRAP, "
        "AVAIL_KAFKA_SECURITY_PROTOCOL, the SASL user, password and mechanism, and "
        "AVAIL_KAFKA_CA_FILE (the CA the brokers' certificates come from)"
    )


async def refused_by_security(bootstrap: str, options: Mapping[str, Any]) -> str | None:
    """Why the first broker refuses this client's TLS or SASL settings (its certificate not
    from the CA, the login failed), or None when it does not: it may still be out of reach,
    which is an outage, not a setting. aiokafka's clients report both as a closed
    connection; one connection of its own, asked for SaslAuthenticate's error message,
    tells them apart."""
    if not options:
        return None
    host, _, port = bootstrap.split(",")[0].strip().rpartition(":")
    try:
        async with asyncio.timeout(PROBE_TIMEOUT_S):
            conn = await create_conn(
                host, int(port), version_hint=SASL_AUTHENTICATE_SINCE, **options
            )
    except (SaslAuthenticationFailed, UnsupportedSaslMechanismError, ssl.SSLError) as exc:
        return f"{type(exc).__name__}: {exc}"
    except (OSError, TimeoutError, KafkaError):
        return None
    conn.close()
    return None

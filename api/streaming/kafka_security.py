"""How every Kafka client of the service connects: the API's producer and consumers, the
worker's faust app and its own consumers, the operator commands. One place, so that none of
them can be left on PLAINTEXT when the cluster asks for TLS and SASL."""

from __future__ import annotations

import ssl
from typing import Any

import faust
from aiokafka.helpers import create_ssl_context

from availability import Settings


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

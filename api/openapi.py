"""OpenAPI for routes whose bodies msgspec encodes and decodes: schemas come from the same
Structs as the code (msgspec's JSON Schema), and every error the SPEC names is documented."""

from __future__ import annotations

from typing import Any, Final

import msgspec
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from availability import Availability, Event, Positions, Rules
from availability.feeds import FeedPage, SnapshotPage
from availability.holds import CommitAnswer, CommitRequest, HoldAnswer, HoldRequest
from availability.snapshot_reports import SnapshotReport

from .errors import ErrorEnvelope
from .schemas import AvailabilityBatch, BatchQuestion, EventsAccepted, EventsRefused

_REF: Final = "#/components/schemas/{name}"
_TYPES: Final[tuple[Any, ...]] = (
    Availability,
    AvailabilityBatch,
    BatchQuestion,
    Positions,
    list[Event],
    EventsAccepted,
    EventsRefused,
    Rules,
    ErrorEnvelope,
    FeedPage,
    SnapshotPage,
    HoldRequest,
    HoldAnswer,
    CommitRequest,
    CommitAnswer,
    SnapshotReport,
)


def ref(name: str) -> dict[str, Any]:
    return {"$ref": _REF.format(name=name)}


def json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def answer(status: int, description: str, schema: str) -> dict[int | str, dict[str, Any]]:
    return {status: {"description": description, "content": json_content(ref(schema))}}


def errors(*cases: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """Document error answers: (status, "code: when") pairs, grouped by status."""
    grouped: dict[int, list[str]] = {}
    for status, text in cases:
        grouped.setdefault(status, []).append(text)
    return {
        status: {"description": "; ".join(texts), "content": json_content(ref("ErrorEnvelope"))}
        for status, texts in grouped.items()
    }


def request_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "description": description,
            "content": json_content(schema),
        }
    }


def add_checks_beyond_types(components: dict[str, Any]) -> None:
    """What the service refuses past the Structs' types and bounds (a `__post_init__`, the
    rules' own checks), said in JSON Schema where it can be, so that the document admits
    no request the service refuses for it."""
    # Adjust.__post_init__: a delta of 0 is refused.
    components["Adjust"]["properties"]["delta"]["not"] = {"const": 0}
    # rules._check_safety_stock: a rule gives a location or a location type, not both.
    components["SafetyStockRule"]["not"] = {
        "required": ["location", "location_type"],
        "properties": {"location": {"type": "string"}, "location_type": {"type": "string"}},
    }


def install_openapi(app: FastAPI) -> None:
    def build() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        (schemas, components) = msgspec.json.schema_components(_TYPES, ref_template=_REF)
        # The event union has no name of its own in msgspec's output, but the events body
        # refers to it as `Event`: name it, tagged by `type`.
        components["Event"] = schemas[_TYPES.index(list[Event])]["items"]
        add_checks_beyond_types(components)
        document.setdefault("components", {}).setdefault("schemas", {}).update(components)
        document["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
        document["security"] = [{"bearer": []}, {}]
        app.openapi_schema = document
        return document

    app.openapi = build  # type: ignore[method-assign]

"""The rules document: read by anyone with `read`, replaced only by `admin`."""

from __future__ import annotations

import msgspec
from fastapi import APIRouter, Request
from starlette.responses import Response

from availability import InvalidRules, decode_rules
from availability.decoding import ANY_JSON, decoded

from ..body import MAX_OTHER_BODY, read_body
from ..deps import Services
from ..encoding import json_response
from ..errors import ApiError
from ..openapi import answer, errors, ref, request_body
from ..whole_numbers import refused_a_float, whole_numbers_as_ints


def rules_router(services: Services) -> APIRouter:
    router = APIRouter(tags=["rules"])

    @router.get(
        "/v1/rules",
        dependencies=[services.scope("read")],  # type: ignore[list-item]
        summary="The rules in force",
        responses={
            **answer(200, "the rules document", "Rules"),
            **errors(
                (401, "unauthorized"),
                (403, "forbidden: the key lacks `read`"),
                (503, "not_ready: the rules in force are not known yet (Kafka); retry"),
            ),
        },
    )
    async def get_rules() -> Response:
        return json_response(await services.rules.rules())

    @router.put(
        "/v1/rules",
        dependencies=[services.scope("admin")],  # type: ignore[list-item]
        summary="Replace the rules; every SKU's answers follow within seconds",
        openapi_extra=request_body(ref("Rules"), "the whole rules document (SPEC section 4)"),
        responses={
            **answer(200, "the rules now in force", "Rules"),
            **errors(
                (400, "malformed_json"),
                (413, "payload_too_large"),
                (422, "invalid_rules: what is wrong and where; the old rules stay"),
                (401, "unauthorized"),
                (403, "forbidden: the key lacks `admin`"),
                (503, "not_ready: the rules could not be stored or announced (Kafka); retry"),
            ),
        },
    )
    async def put_rules(request: Request) -> Response:
        body = await read_body(request, MAX_OTHER_BODY)
        try:
            decoded(ANY_JSON, body)
        except msgspec.DecodeError as exc:
            raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from exc
        try:
            rules = decode_rules(body)
        except InvalidRules as exc:
            rewritten = whole_numbers_as_ints(body) if refused_a_float(str(exc)) else None
            if rewritten is None:
                raise
            rules = decode_rules(rewritten)
        return json_response(await services.rules.replace_rules(rules))

    return router

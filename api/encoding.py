"""Answers are encoded by msgspec straight to bytes: FastAPI's default encoder walks every
object through jsonable_encoder, several times slower on batch answers. A `msgspec.Raw`
(an answer already encoded, as the streaming mode reads it from Redis) is sent as it is."""

from __future__ import annotations

from typing import Final

import msgspec
from starlette.responses import Response

_encoder: Final = msgspec.json.Encoder()


class JsonResponse(Response):
    media_type = "application/json"

    def render(self, content: object) -> bytes:
        return _encoder.encode(content)


def json_response(content: object, status: int = 200) -> Response:
    return Response(_encoder.encode(content), status_code=status, media_type="application/json")

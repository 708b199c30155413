"""Request bodies read with a size limit, and decoded by msgspec with clear refusals."""

from __future__ import annotations

from typing import Final, TypeVar

import msgspec
from fastapi import Request

from availability.decoding import decoded
from availability.events import split_error

from .errors import ApiError
from .whole_numbers import refused_a_float, whole_numbers_as_ints

MAX_EVENTS_BODY: Final = 4 * 1024 * 1024  # SPEC: a body over 4 MiB is refused with 413
MAX_OTHER_BODY: Final = 1024 * 1024

T = TypeVar("T")


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, "payload_too_large", f"the body is over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, "payload_too_large", f"the body is over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def decode_json(body: bytes, decoder: msgspec.json.Decoder[T]) -> T:
    """Decode `body`; 400 malformed_json when it isn't JSON, 422 invalid_request when it
    doesn't fit `decoder`'s type."""
    try:
        return decoded(decoder, body)
    except msgspec.ValidationError as exc:
        rewritten = whole_numbers_as_ints(body) if refused_a_float(str(exc)) else None
        if rewritten is not None:
            return decode_json(rewritten, decoder)
        field, message = split_error(exc)
        raise ApiError(
            422, "invalid_request", "the request is invalid", [{"field": field, "message": message}]
        ) from exc
    except msgspec.DecodeError as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from exc

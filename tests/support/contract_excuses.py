"""The few answers schemathesis' checks take for failures and the service gives by design,
each excused only in its exact shape (route, status, error code, what the request carried),
with the reason no OpenAPI document can say it. Any other failure of the same check, on the
same route, still fails the run.

The checks assume what JSON Schema can say is all there is: that a schema-valid request is
taken, that a resource just created answers, that `Allow` lists a path template's methods.
These answers are the service's documented behaviour (README, "The HTTP API" and
"Checkout holds") where that assumption does not hold.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from schemathesis import Case, Response
from schemathesis.core.failures import Failure, ServerError
from schemathesis.openapi.checks import (
    AllowHeaderMismatch,
    EnsureResourceAvailability,
    RejectedPositiveData,
)

Excuse = Callable[[Failure, Case, Response], bool]


def error_of(response: Response) -> dict[str, Any]:
    """The `error` of the service's refusal envelope; {} for any other body."""
    try:
        body = json.loads(response.content)
    except ValueError:
        return {}
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def route(case: Case) -> str:
    return f"{case.operation.method.upper()} {case.operation.path}"


def an_opaque_token_not_issued(failure: Failure, case: Case, response: Response) -> bool:
    """A feed's cursor and a snapshot's page token are opaque: only the ones the feed issued
    are valid, and no schema can list them. A generated one, valid by its pattern, is
    refused 422 invalid_cursor, or 410 cursor_expired when it reads as one older than the
    feed keeps. Real ones come from the stateful phase, which follows them from the answers."""
    tokens = {"cursor", "page_token"} & set(case.query or {})
    code = error_of(response).get("code")
    return (
        isinstance(failure, RejectedPositiveData)
        and case.operation.path.startswith("/v1/feeds/")
        and bool(tokens)
        and (response.status_code, code) in {(422, "invalid_cursor"), (410, "cursor_expired")}
    )


def a_safety_stock_scope_given_twice(failure: Failure, case: Case, response: Response) -> bool:
    """Two safety-stock rules for the same (sku, location, location_type) are refused (SPEC
    4: the most specific rule wins, so two of one scope are a mistake); JSON Schema has no
    uniqueness over some properties of array items."""
    error = error_of(response)
    return (
        isinstance(failure, RejectedPositiveData)
        and route(case) == "PUT /v1/rules"
        and response.status_code == 422
        and error.get("code") == "invalid_rules"
        and str(error.get("message", "")).endswith("a rule for the same scope comes earlier")
    )


# What `clock_error` (availability/events.py) says: the two bounds of `occurred_at`.
CLOCK_REFUSALS: Final = (
    "occurred_at is more than 5 minutes ahead of the server clock",
    "occurred_at is before 1970-01-01T00:00:00Z",
)


def an_event_dated_outside_the_clock(failure: Failure, case: Case, response: Response) -> bool:
    """An event's `occurred_at` must be from 1970 to 5 minutes past the server's clock: a
    bound that moves with the clock, and a `date-time` format has no bounds anyway. Excused
    only when every refused event is refused for that and nothing else."""
    error = error_of(response)
    details = error.get("details") or []
    return (
        isinstance(failure, RejectedPositiveData)
        and route(case) == "POST /v1/events"
        and response.status_code == 422
        and error.get("code") == "invalid_events"
        and bool(details)
        and all(
            isinstance(detail, dict)
            and detail.get("field") == "occurred_at"
            and detail.get("message") in CLOCK_REFUSALS
            for detail in details
        )
    )


def a_hold_that_ended(failure: Failure, case: Case, response: Response) -> bool:
    """A 201 from POST /v1/holds does not mean the hold is live when the next call comes: it
    ends by itself at expires_at (`ttl_s` may be 1 s), and a repeated `hold_id` gets its
    first answer (201) again for a day after the hold ended, released or committed, so that
    a storefront retrying a POST that timed out never holds twice (README, "Idempotence").
    Its release or commit is then 404 unknown_hold saying how it ended; a hold never
    placed ("no hold ...") is not excused."""
    error = error_of(response)
    return (
        isinstance(failure, EnsureResourceAvailability)
        and case.operation.path.startswith("/v1/holds/")
        and response.status_code == 404
        and error.get("code") == "unknown_hold"
        and "holds nothing any more" in str(error.get("message", ""))
    )


def batch_is_also_a_sku(failure: Failure, case: Case, response: Response) -> bool:
    """`/v1/availability/batch` is also `/v1/availability/{sku}` for the SKU "batch" (a
    valid SKU), so GET is allowed there and `Allow` rightly says GET, POST; the check reads
    the path as the batch operation's alone."""
    allow = ", ".join(response.headers.get("allow", []))
    return (
        isinstance(failure, AllowHeaderMismatch)
        and case.operation.path == "/v1/availability/batch"
        and allow == "GET, POST"
    )


def _breakdown_part_apart(detail: object, asked: dict[str, Any]) -> bool:
    """`detail` names a breakdown parameter the question gave without what it goes with."""
    if not isinstance(detail, dict) or asked.get(detail.get("field")) is None:
        return False
    if detail.get("message") == "only with include=locations":
        return asked.get("include") is None
    return detail.get("message") == "not with location" and asked.get("location") is not None


def a_breakdown_asked_apart(failure: Failure, case: Case, response: Response) -> bool:
    """An availability question's `after` and `limit` page the per-location breakdown and
    go only with `include=locations`, which does not go with `location` (README, "The HTTP
    API"): an OpenAPI document cannot tie one parameter to another. Excused only when every
    refused parameter is refused for that, and the question did give it so."""
    error = error_of(response)
    details = error.get("details") or []
    asked = case.body if case.operation.method.upper() == "POST" else case.query
    return (
        isinstance(failure, RejectedPositiveData)
        and case.operation.path.startswith("/v1/availability/")
        and response.status_code == 422
        and error.get("code") == "invalid_request"
        and isinstance(asked, dict)
        and bool(details)
        and all(_breakdown_part_apart(detail, asked) for detail in details)
    )


def a_documented_retry(failure: Failure, case: Case, response: Response) -> bool:
    """503 `not_ready` or `holds_unavailable` tells the client to retry, and every route
    documents it: the streaming stack answers it while a worker is behind (its partitions'
    alive keys not renewed in time, a hold's decision late), as a loaded 2-core machine
    makes happen now and then. schemathesis' not_a_server_error takes any 5xx for a failure;
    a 500, or a 503 with another body, still fails the run."""
    code = error_of(response).get("code")
    return (
        isinstance(failure, ServerError)
        and response.status_code == 503
        and code in {"not_ready", "holds_unavailable"}
    )


EXCUSES: Final[tuple[Excuse, ...]] = (
    an_opaque_token_not_issued,
    a_safety_stock_scope_given_twice,
    an_event_dated_outside_the_clock,
    a_hold_that_ended,
    batch_is_also_a_sku,
    a_breakdown_asked_apart,
    a_documented_retry,
)


def excuse_for(failure: Failure, case: Case, response: Response) -> str | None:
    """The name of the excuse that explains `failure`; None when none does."""
    for excuse in EXCUSES:
        if excuse(failure, case, response):
            return excuse.__name__
    return None

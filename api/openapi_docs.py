"""What the OpenAPI document promises: every status a route can answer, with its error body, and clean operation ids.

Client generators name their methods after the operation ids (`createOrder`, `listOrders`, ...), and a client
author reads the responses to know what to handle; the schemathesis test holds the API to both.
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from pydantic.alias_generators import to_camel

from models.schemas import ErrorBody

Responses = dict[int | str, dict[str, Any]]


def error(description: str) -> dict[str, Any]:
    """A documented error status: the one error body, and which codes it carries."""
    return {"model": ErrorBody, "description": description}


UNAVAILABLE: Responses = {
    503: error("SERVICE_UNAVAILABLE or NOT_READY: Postgres or Redis does not answer in time; retry after Retry-After"),
}
# Every /v1 route behind a bearer token.
AUTHENTICATED: Responses = {
    401: error("UNAUTHORIZED: missing, invalid or expired token, or wrong aud/iss"),
    403: error("FORBIDDEN: the token lacks the scope"),
    422: error("VALIDATION_ERROR or INVALID_CURSOR: a parameter or the body breaks the documented rules"),
    429: error("RATE_LIMITED, with Retry-After: the client, or its address after failed logins"),
    **UNAVAILABLE,
}
# Routes that read a request body.
WITH_BODY: Responses = {
    400: error("MALFORMED_JSON: the body is not valid JSON"),
    413: error("PAYLOAD_TOO_LARGE: the body is over the size limit"),
}


def operation_id(route: APIRoute) -> str:
    """The route's function name in camelCase: `list_orders` is `listOrders`."""
    return to_camel(route.name)

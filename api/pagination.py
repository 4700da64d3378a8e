"""Keyset pages: a list resumes after the last row it returned, so page 1,000 costs what page 1 costs.

The cursor is that row's sort key, as opaque text (URL-safe base64 of a JSON array). It names a position, not
rows, so it cannot reach outside the caller's filters: every query adds its own client and filters around it.
Rows inserted while a client pages show up on a later walk, never twice in one walk nor leave a gap.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Query, Request
from fastapi.responses import JSONResponse

from api.errors import ApiError

T = TypeVar("T")
MAX_CURSOR_CHARS = 512
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"


def encode_cursor(key: Sequence[str]) -> str:
    """The opaque cursor of a sort key (its parts as strings)."""
    return base64.urlsafe_b64encode(json.dumps(list(key), separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, parts: int) -> list[str]:
    """The sort key a cursor names; 422 INVALID_CURSOR if it is not one this API made for this list."""
    try:
        key = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, ValueError):
        key = None
    if not isinstance(key, list) or len(key) != parts or not all(isinstance(part, str) for part in key):
        raise invalid_cursor()
    return key


def invalid_cursor() -> ApiError:
    return ApiError(422, "INVALID_CURSOR", "the cursor is not one this list returned; start again without it")


async def no_offset(request: Request) -> None:
    """422 for the retired `offset` parameter, rather than silently answering the first page."""
    if "offset" in request.query_params:
        raise ApiError(
            422,
            "VALIDATION_ERROR",
            "offset paging is gone: follow `next`, or pass `cursor`",
            [{"loc": ["query", "offset"], "msg": "use cursor", "type": "unsupported"}],
        )


def page(
    request: Request,
    rows: Sequence[T],
    limit: int,
    key: Callable[[T], Sequence[str]],
    render: Callable[[T], dict[str, Any]],
) -> JSONResponse:
    """The first `limit` rows as a Page document; the query fetched one more to know whether a next page exists.

    Written straight to JSON: the documents are built by api/views.py, and the schemathesis test holds them to
    the Page schema, so validating them again per request would only cost CPU.
    """
    shown, cursor, following = rows[:limit], None, None
    if len(rows) > limit:
        cursor = encode_cursor(key(shown[-1]))
        url = request.url.include_query_params(cursor=cursor)
        following = f"{url.path}?{url.query}"
    return JSONResponse({"data": [render(row) for row in shown], "nextCursor": cursor, "next": following})


Cursor = Annotated[
    str | None,
    Query(max_length=MAX_CURSOR_CHARS, pattern=CURSOR_PATTERN, description="`nextCursor` of the previous page."),
]
NoOffset = Annotated[None, Depends(no_offset)]

"""Request parameters as Stripe checks them: allow-lists, integers, metadata, and search queries."""

from __future__ import annotations

import re
from collections.abc import Callable

from .objects import Json, Reply, invalid


class ApiFailure(Exception):
    """Raised inside an operation to answer with a Stripe error instead.

    `saved=False` marks a request rejected before the endpoint ran (bad parameters): like Stripe, such an answer
    is not stored under the Idempotency-Key, so a corrected retry with the same key goes through.
    """

    def __init__(self, reply: Reply, *, saved: bool = True) -> None:
        super().__init__(reply[1]["error"]["message"])
        self.reply = reply
        self.saved = saved


def rejected(message: str, *, code: str, param: str | None = None) -> ApiFailure:
    """A parameter-validation failure (400, not saved under the idempotency key)."""
    return ApiFailure(invalid(message, code=code, param=param), saved=False)


INTENT_PARAMS = frozenset(
    "amount currency payment_method confirm metadata automatic_payment_methods payment_method_types description "
    "allowed_payment_method_types error_on_requires_action capture_method confirmation_method customer "
    "receipt_email return_url statement_descriptor expand".split()
)
CONFIRM_PARAMS = frozenset("payment_method return_url error_on_requires_action expand".split())
CANCEL_PARAMS = frozenset("cancellation_reason expand".split())
REFUND_PARAMS = frozenset("payment_intent charge amount reason metadata expand".split())
_CLAUSE = re.compile(
    r"""(?:metadata\[(?P<q1>['"])(?P<key>(?:\\.|(?!(?P=q1)).)*)(?P=q1)\]|(?P<field>[a-z_]+))"""
    r""":(?P<q2>['"])(?P<value>(?:\\.|(?!(?P=q2)).)*)(?P=q2)"""
)


def positive_int(params: Json, name: str) -> int:
    """A required integer parameter >= 1 (amounts are in minor units)."""
    raw = params.get(name)
    if raw is None:
        raise rejected(f"Missing required param: {name}.", code="parameter_missing", param=name)
    if not isinstance(raw, str) or not raw.lstrip("-").isdigit():
        raise rejected(f"Invalid integer: {raw}", code="parameter_invalid_integer", param=name)
    if int(raw) < 1:
        raise rejected("This value must be greater than or equal to 1.", code="parameter_invalid_integer", param=name)
    return int(raw)


def parse_currency(params: Json) -> str:
    """A required three-letter ISO currency code, lower-cased as Stripe stores it."""
    value = str(params.get("currency", "")).lower()
    if not value:
        raise rejected("Missing required param: currency.", code="parameter_missing", param="currency")
    if not re.fullmatch(r"[a-z]{3}", value):
        raise rejected(f"Invalid currency: {value}", code="parameter_invalid_string", param="currency")
    return value


def check_known(params: Json, allowed: frozenset[str]) -> None:
    """Refuse parameters the endpoint does not take, as Stripe does (catches typos in callers)."""
    for name in params:
        if name not in allowed:
            raise rejected(f"Received unknown parameter: {name}", code="parameter_unknown", param=name)


def metadata(params: Json) -> dict[str, str]:
    """The `metadata[...]` hash as a flat str -> str dict."""
    meta = params.get("metadata") or {}
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise rejected("Invalid hash", code="parameter_invalid_hash", param="metadata")
    return dict(meta)


def limit(params: Json) -> int:
    """The page size of a list or search (default 10, at most 100)."""
    raw = str(params.get("limit", "10"))
    if not raw.isdigit() or not 1 <= int(raw) <= 100:
        raise rejected(f"Invalid limit: {raw}", code="parameter_invalid_integer", param="limit")
    return int(raw)


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def search_matcher(query: str) -> Callable[[Json], bool]:
    """Compile Stripe's search syntax, limited to `field:'v'` and `metadata['k']:'v'` clauses joined by AND."""
    tests: list[Callable[[Json], bool]] = []
    for clause in re.split(r"\s+AND\s+", query.strip()):
        m = _CLAUSE.fullmatch(clause)
        if not m:
            raise rejected(f"Invalid search query: {query}", code="parameter_invalid_string", param="query")
        if m["key"] is not None:
            tests.append(_metadata_equals(_unescape(m["key"]), _unescape(m["value"])))
        else:
            tests.append(_field_equals(m["field"], _unescape(m["value"])))
    return lambda pi: all(test(pi) for test in tests)


def _metadata_equals(key: str, value: str) -> Callable[[Json], bool]:
    return lambda pi: bool(pi["metadata"].get(key) == value)


def _field_equals(field: str, value: str) -> Callable[[Json], bool]:
    return lambda pi: str(pi.get(field)) == value

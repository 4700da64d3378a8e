"""The console's sign-in: a bearer token traded for a session cookie, and the CSRF token its forms carry.

The cookie is a JWT of its own: signed with a key derived from each API key (so a session is never a bearer
token, nor a bearer token a session), carrying who signed in, whether they may act, a session id, the CSRF
token and the expiry. It is HttpOnly and SameSite=Strict. Signing out writes the session id to Redis until
the session would have expired, so a copied cookie dies with it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import jwt
import redis

from api.auth import ALGORITHM, Client
from pipeline.logs import get_logger

log = get_logger(__name__)

COOKIE = "orderflow_console"
READ_SCOPE = "console:read"
ACT_SCOPE = "admin"
PURPOSE = b"orderflow console session v1"
SIGNED_OUT_KEY = "orderflow:console:signed-out:{}"


@dataclass(frozen=True)
class Operator:
    """Who is signed in to the console, and whether they may act or only look."""

    name: str
    may_act: bool
    session_id: str
    csrf: str
    expires_at: int


def session_keys(api_keys: list[str]) -> list[bytes]:
    """One session key per API key, in the same order (the first signs, every one verifies)."""
    return [hmac.new(key.encode(), PURPOSE, hashlib.sha256).digest() for key in api_keys]


def may_use_console(client: Client) -> bool:
    return client.may(READ_SCOPE)  # admin grants it too


def open_session(client: Client, token_expires_at: float, keys: list[bytes], ttl_s: int) -> tuple[str, Operator]:
    """The cookie value for a signed-in client, and its operator; it lasts ttl_s, or less if the token runs out."""
    expires_at = int(min(time.time() + ttl_s, token_expires_at))
    operator = Operator(
        client.id, ACT_SCOPE in client.scopes, secrets.token_urlsafe(16), secrets.token_urlsafe(32), expires_at
    )
    claims = {"sub": operator.name, "act": operator.may_act, "sid": operator.session_id, "csrf": operator.csrf}
    return jwt.encode(claims | {"exp": expires_at}, keys[0], algorithm=ALGORITHM), operator


def read_session(cookie: str | None, keys: list[bytes]) -> Operator | None:
    """The operator a session cookie names, or None when it is missing, forged, expired or malformed."""
    if not cookie:
        return None
    for key in keys:
        try:
            claims = jwt.decode(cookie, key, algorithms=[ALGORITHM], options={"require": ["exp", "sub", "sid", "csrf"]})
        except jwt.InvalidSignatureError:
            continue
        except jwt.InvalidTokenError:
            return None
        name, may_act, session_id, csrf = claims["sub"], claims.get("act"), claims["sid"], claims["csrf"]
        if not all(isinstance(part, str) for part in (name, session_id, csrf)) or not isinstance(may_act, bool):
            return None
        return Operator(name, may_act, session_id, csrf, int(claims["exp"]))
    return None


def csrf_matches(operator: Operator, submitted: str | None) -> bool:
    return submitted is not None and hmac.compare_digest(operator.csrf.encode(), submitted.encode())


def sign_out(client: redis.Redis, operator: Operator) -> None:
    """Remember the session as signed out until it would have expired anyway."""
    left = max(1, operator.expires_at - int(time.time()))
    client.set(SIGNED_OUT_KEY.format(operator.session_id), 1, ex=left)


def signed_out(client: redis.Redis, operator: Operator) -> bool:
    """Whether the session was signed out. With Redis unreachable the console stays open (it is what an operator
    needs when things break) and that is logged: the cookie's own expiry still bounds the session."""
    try:
        return bool(client.exists(SIGNED_OUT_KEY.format(operator.session_id)))
    except redis.RedisError as error:
        log.warning("console_sign_out_unchecked", operator=operator.name, error=type(error).__name__)
        return False

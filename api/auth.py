"""Bearer JWTs (HS256): `sub` is the client id, `scopes` its grants. The first secret signs, every secret verifies.

Rotating a key: put the new secret first and keep the old one after it until old tokens have expired.
With JWT_AUDIENCE / JWT_ISSUER set, a token must also carry that `aud` / `iss`; unset, neither is checked.
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jwt

from pipeline.config import Settings

ALGORITHM = "HS256"
# console:read: an operator who may look at the console (every order) but not act; admin may do both.
SCOPES = frozenset({"orders:read", "orders:write", "admin", "console:read"})
MIN_SECRET_BYTES = 32  # RFC 7518: an HS256 key at least as long as the hash
MAX_CLIENT_ID = 64  # the width of idempotency_keys.client_id
LOCAL_SECRET_FILE = "jwt-secret"
VERIFIED_TOKENS = 4096  # distinct valid tokens remembered per process (a few hundred bytes each)
# Why a token was refused: the label values of orderflow_auth_failures_total (a fixed, small set).
FAILURE_REASONS = ("missing", "malformed", "signature", "expired", "audience", "issuer", "claims")


@dataclass(frozen=True)
class Client:
    """Who is calling, and what its token lets it do."""

    id: str
    scopes: frozenset[str]

    def may(self, scope: str) -> bool:
        """True when the token grants `scope`; `admin` grants everything."""
        return scope in self.scopes or "admin" in self.scopes


class InvalidToken(Exception):
    """A token that is missing, malformed, badly signed, expired, for another audience or issuer, or lacks a subject.

    `reason` is one of FAILURE_REASONS.
    """

    def __init__(self, message: str, reason: str) -> None:
        assert reason in FAILURE_REASONS, reason
        super().__init__(message)
        self.reason = reason


def verification_keys(settings: Settings) -> list[str]:
    """The configured secrets (first = signing key), or the local stack's secret when none is configured."""
    keys = [secret.get_secret_value() for secret in settings.jwt_secrets]
    if not keys:
        keys = [local_secret(settings.stack_dir)]
    short = [i for i, key in enumerate(keys) if len(key.encode()) < MIN_SECRET_BYTES]
    if short:
        raise ValueError(f"JWT_SECRETS entries {short} are shorter than {MIN_SECRET_BYTES} bytes; use random secrets")
    return keys


def local_secret(stack_dir: Path) -> str:
    """The local stack's signing secret, created once (mode 0600) under stack_dir; for development only."""
    path = stack_dir / LOCAL_SECRET_FILE
    if not path.exists():
        # Written whole under a name of our own, then linked into place: a process starting beside us (the API's
        # processes all start at once) sees no file or the whole secret, never an empty one.
        stack_dir.mkdir(parents=True, exist_ok=True)
        draft = stack_dir / f".{LOCAL_SECRET_FILE}.{os.getpid()}.{threading.get_ident()}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(48))
        try:
            os.link(draft, path)
        except FileExistsError:  # another process linked its secret first: use theirs
            pass
        finally:
            draft.unlink()
    return path.read_text().strip()


def mint_token(
    secret: str,
    client_id: str,
    scopes: list[str],
    ttl_s: int = 3600,
    *,
    audience: str | None = None,
    issuer: str | None = None,
) -> str:
    """A signed token for client_id with the given scopes (at least one), valid for ttl_s seconds."""
    if not scopes:
        raise ValueError(f"a token needs at least one scope; known: {sorted(SCOPES)}")
    unknown = set(scopes) - SCOPES
    if unknown:
        raise ValueError(f"unknown scopes {sorted(unknown)}; known: {sorted(SCOPES)}")
    now = int(time.time())
    claims: dict[str, Any] = {"sub": client_id, "scopes": sorted(set(scopes)), "iat": now, "exp": now + ttl_s}
    if audience is not None:
        claims["aud"] = audience
    if issuer is not None:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def mint_for(settings: Settings, client_id: str, scopes: list[str], ttl_s: int = 3600) -> str:
    """A token these settings' API accepts: signed with the first key, with the configured audience and issuer."""
    key = verification_keys(settings)[0]
    return mint_token(key, client_id, scopes, ttl_s, audience=settings.jwt_audience, issuer=settings.jwt_issuer)


def authenticate(token: str, keys: list[str], audience: str | None = None, issuer: str | None = None) -> Client:
    """The client a token names, if any key verifies its signature, it has not expired, and its aud/iss match."""
    return verify(token, keys, audience, issuer)[0]


def verify(token: str, keys: list[str], audience: str | None = None, issuer: str | None = None) -> tuple[Client, float]:
    """`authenticate`, with the moment the token expires (epoch seconds): a console sign-in lasts no longer."""
    client, expires_at = _verified_client(token, tuple(keys), audience, issuer)
    if expires_at <= time.time():  # PyJWT's own test (no leeway), for tokens verified while still valid
        raise InvalidToken("the token has expired", "expired")
    return client, expires_at


@lru_cache(maxsize=VERIFIED_TOKENS)
def _verified_client(
    token: str, keys: tuple[str, ...], audience: str | None, issuer: str | None
) -> tuple[Client, float]:
    """The client and expiry of a token that verifies (a shop reuses its token: verify each one once).

    Only tokens that verify are cached (a raise is not), keyed by everything they were checked against;
    the expiry is checked on every use.
    """
    claims = _verified_claims(token, list(keys), audience, issuer)
    subject, scopes = claims.get("sub"), claims.get("scopes", [])
    if not isinstance(subject, str) or not 0 < len(subject) <= MAX_CLIENT_ID:
        raise InvalidToken(f"the token's subject must be a client id of 1 to {MAX_CLIENT_ID} characters", "claims")
    if not isinstance(scopes, list) or not all(isinstance(scope, str) for scope in scopes):
        raise InvalidToken("the token's scopes claim must be a list of strings", "claims")
    return Client(subject, frozenset(scopes)), float(claims["exp"])


def decode_options(audience: str | None, issuer: str | None) -> dict[str, Any]:
    """PyJWT's keyword arguments: exp and sub always required, aud and iss required and matched when configured.

    With no audience configured an `aud` claim is not checked (PyJWT would refuse every token carrying one):
    this API then names no audience to compare with, and tokens minted with one keep working while
    JWT_AUDIENCE is rolled out to the minters before the API.
    """
    required = ["exp", "sub"] + ["aud"] * (audience is not None) + ["iss"] * (issuer is not None)
    return {
        "algorithms": [ALGORITHM],
        "audience": audience,
        "issuer": issuer,
        "options": {"require": required, "verify_aud": audience is not None},
    }


def _verified_claims(token: str, keys: list[str], audience: str | None, issuer: str | None) -> dict[str, Any]:
    options = decode_options(audience, issuer)
    for key in keys:
        try:
            claims: dict[str, Any] = jwt.decode(token, key, **options)
            return claims
        except jwt.InvalidSignatureError:
            continue  # maybe signed with another (older or newer) key
        except jwt.ExpiredSignatureError:
            raise InvalidToken("the token has expired", "expired") from None
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError, jwt.MissingRequiredClaimError) as error:
            raise _claim_error(error, audience, issuer) from None
        except jwt.InvalidTokenError as error:
            raise InvalidToken(f"the token is invalid: {error}", "malformed") from None
    raise InvalidToken("the token's signature does not match any configured key", "signature")


def _claim_error(error: jwt.InvalidTokenError, audience: str | None, issuer: str | None) -> InvalidToken:
    missing = error.claim if isinstance(error, jwt.MissingRequiredClaimError) else None
    if isinstance(error, jwt.InvalidAudienceError) or missing == "aud":
        return InvalidToken(f"the token's audience (aud) must be {audience!r}", "audience")
    if isinstance(error, jwt.InvalidIssuerError) or missing == "iss":
        return InvalidToken(f"the token's issuer (iss) must be {issuer!r}", "issuer")
    return InvalidToken(f"the token is invalid: {error}", "malformed")

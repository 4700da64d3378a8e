"""Token claims: what mint_token writes and what authenticate accepts, with no server behind them."""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt
import pytest
from pydantic import SecretStr

from api.auth import FAILURE_REASONS, Client, InvalidToken, authenticate, mint_for, mint_token
from pipeline.config import Settings

KEY = secrets.token_urlsafe(32)
LATER = int(time.time()) + 86_400  # tokens below are made at collection: valid for the whole run
AUDIENCE, ISSUER = "orderflow-api", "https://auth.example.com"


def signed(**claims: Any) -> str:
    base = {"sub": "shop-1", "scopes": ["orders:read"], "exp": LATER}
    return jwt.encode({**base, **claims}, KEY, algorithm="HS256")


def refusal(token: str, audience: str | None = None, issuer: str | None = None) -> InvalidToken:
    with pytest.raises(InvalidToken) as caught:
        authenticate(token, [KEY], audience, issuer)
    return caught.value


def test_minting_a_token_with_no_scope_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one scope"):
        mint_token(KEY, "shop-1", [])


def test_a_minted_token_carries_the_audience_and_issuer_only_when_given() -> None:
    plain = jwt.decode(mint_token(KEY, "shop-1", ["orders:read"]), KEY, algorithms=["HS256"])
    named = jwt.decode(
        mint_token(KEY, "shop-1", ["orders:read"], audience=AUDIENCE, issuer=ISSUER),
        KEY,
        algorithms=["HS256"],
        audience=AUDIENCE,
        issuer=ISSUER,
    )

    assert "aud" not in plain and "iss" not in plain
    assert (named["aud"], named["iss"]) == (AUDIENCE, ISSUER)


def test_mint_for_signs_with_the_first_secret_and_names_the_configured_audience_and_issuer() -> None:
    other = secrets.token_urlsafe(32)
    settings = Settings(jwt_secrets=[SecretStr(KEY), SecretStr(other)], jwt_audience=AUDIENCE, jwt_issuer=ISSUER)

    client = authenticate(mint_for(settings, "shop-1", ["admin"]), [KEY], AUDIENCE, ISSUER)

    assert client == Client("shop-1", frozenset({"admin"}))


def test_blank_audience_and_issuer_mean_unset() -> None:
    settings = Settings(jwt_audience="", jwt_issuer="")

    assert settings.jwt_audience is None and settings.jwt_issuer is None


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"aud": None}, "audience"),
        ({"aud": "another-api"}, "audience"),
        ({"iss": None}, "issuer"),
        ({"iss": "https://evil.example.com"}, "issuer"),
    ],
    ids=["no aud", "wrong aud", "no iss", "wrong iss"],
)
def test_with_an_audience_and_issuer_configured_a_token_must_carry_both(claims: dict[str, Any], reason: str) -> None:
    # Given a token right in every other way, with one claim missing (None) or wrong
    named = {"aud": AUDIENCE, "iss": ISSUER} | claims
    token = signed(**{name: value for name, value in named.items() if value is not None})

    # When it is checked against the configured audience and issuer
    error = refusal(token, AUDIENCE, ISSUER)

    # Then it is refused, saying which claim and what it must be
    assert error.reason == reason
    assert repr(AUDIENCE if reason == "audience" else ISSUER) in str(error)


def test_a_token_with_the_audience_among_several_and_the_issuer_is_accepted() -> None:
    client = authenticate(signed(aud=["billing", AUDIENCE], iss=ISSUER), [KEY], AUDIENCE, ISSUER)

    assert client.id == "shop-1"


def test_with_nothing_configured_aud_and_iss_claims_are_not_checked() -> None:
    client = authenticate(signed(aud="some-api", iss="someone"), [KEY])

    assert client.id == "shop-1"


def test_a_token_accepted_without_an_audience_is_checked_again_once_one_is_configured() -> None:
    # Given a token without aud, verified (and remembered) while no audience was configured
    token = signed()
    authenticate(token, [KEY])

    # When the same token is checked with an audience configured, it is refused: the cache keys on the settings
    assert refusal(token, AUDIENCE).reason == "audience"


@pytest.mark.parametrize(
    ("token", "reason"),
    [
        ("not-a-jwt", "malformed"),
        (jwt.encode({"sub": "shop-1", "exp": LATER}, secrets.token_urlsafe(32), "HS256"), "signature"),
        (jwt.encode({"sub": "shop-1", "exp": int(time.time()) - 60}, KEY, algorithm="HS256"), "expired"),
        (jwt.encode({"sub": "shop-1"}, KEY, algorithm="HS256"), "malformed"),
        (jwt.encode({"sub": "s" * 65, "exp": LATER}, KEY, algorithm="HS256"), "claims"),
    ],
    ids=["garbage", "another key", "expired", "no exp", "subject too long"],
)
def test_every_refusal_names_one_of_the_few_metric_reasons(token: str, reason: str) -> None:
    error = refusal(token)

    assert error.reason == reason and reason in FAILURE_REASONS

"""The intake API's composition root: `uvicorn api.app:create_app --factory`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import redis
from fastapi import FastAPI

from api import health, orders, products, webhooks
from api.auth import verification_keys
from api.errors import install_error_handlers
from api.metrics import ApiMetrics
from api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from api.ratelimit import RateLimiter
from models.schemas import ErrorBody
from pipeline.config import Settings, get_settings
from pipeline.logs import configure_logging
from workers.dispatch import start_saga

COMMON_ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorBody, "description": "UNAUTHORIZED: missing, invalid or expired token"},
    403: {"model": ErrorBody, "description": "FORBIDDEN: the token lacks the scope"},
    422: {"model": ErrorBody, "description": "VALIDATION_ERROR (or PRODUCT_NOT_FOUND, PRICE_MISMATCH, ...)"},
    429: {"model": ErrorBody, "description": "RATE_LIMITED, with Retry-After"},
}


def create_app(settings: Settings | None = None, enqueue: Callable[[str], None] = start_saga) -> FastAPI:
    """The API for these settings; `enqueue(order_id)` hands a committed order to the saga."""
    settings = settings or get_settings()
    if settings.database_url is None or settings.redis_url is None:
        raise RuntimeError("DATABASE_URL and REDIS_URL must be set: run the API via `orderctl demo`, or set both")
    configure_logging(settings.log_level, settings.log_format)
    jwt_keys = verification_keys(settings)
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=2, socket_connect_timeout=2)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        client.close()

    app = FastAPI(
        title="orderflow intake API",
        version="1",
        summary="Place orders idempotently and follow their checkout saga. Money is integer cents.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.database_url = settings.database_url
    app.state.jwt_keys = jwt_keys
    app.state.redis = client
    app.state.rate_limiter = RateLimiter(client, settings.rate_limit_per_s, settings.rate_limit_burst)
    app.state.metrics = ApiMetrics()
    app.state.enqueue = enqueue
    install_error_handlers(app)
    # Added last = runs first: the request context wraps the body limit, which wraps routing.
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)
    # The routers carry their whole /v1/... prefix, so a matched route's path is its full template (metrics label).
    for router in (orders.router, products.router):
        app.include_router(router, responses=COMMON_ERRORS)
    app.include_router(health.router)
    app.include_router(webhooks.router)  # signed by Stripe, not by our bearer tokens
    return app

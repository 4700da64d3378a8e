"""The intake API's composition root: `uvicorn api.app:create_app --factory`."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import redis
import redis.asyncio
from fastapi import FastAPI

from api import health, orders, products, webhooks
from api.auth import verification_keys
from api.database import intake_pool
from api.errors import install_error_handlers
from api.metrics import ApiMetrics
from api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from api.ratelimit import RateLimiter, check_rate_limit
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


@contextmanager
def frozen_startup_heap() -> Iterator[None]:
    """Keep the objects made at startup out of the garbage collector's full passes while the app serves.

    They (~150k: modules, classes, schemas) live as long as the process, yet every full collection walks
    them, stalling the event loop ~70 ms each time. Cyclic garbage among them would leak until unfrozen.
    """
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def create_app(settings: Settings | None = None, enqueue: Callable[[str], None] = start_saga) -> FastAPI:
    """The API for these settings; `enqueue(order_id)` hands a committed order to the saga."""
    settings = settings or get_settings()
    if settings.database_url is None or settings.redis_url is None:
        raise RuntimeError("DATABASE_URL and REDIS_URL must be set: run the API via `orderctl demo`, or set both")
    configure_logging(settings.log_level, settings.log_format)
    jwt_keys = verification_keys(settings)
    redis_url, database_url = settings.redis_url, settings.database_url
    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)

    check_rate_limit(settings.rate_limit_per_s, settings.rate_limit_burst)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The limiter's async Redis client and the intake pool belong to the serving event loop: made here.
        limiter_redis = redis.asyncio.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)
        async with limiter_redis, intake_pool(database_url) as pool:
            app.state.rate_limiter = RateLimiter(limiter_redis, settings.rate_limit_per_s, settings.rate_limit_burst)
            app.state.intake_pool = pool
            with frozen_startup_heap():
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
    app.state.metrics = ApiMetrics()
    app.state.enqueue = enqueue
    install_error_handlers(app)
    # Added last = runs first: the request context wraps the body limit, which wraps routing.
    webhook_limit = {f"{webhooks.router.prefix}/": settings.max_webhook_body_bytes}  # Stripe's events run large
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes, limits=webhook_limit)
    app.add_middleware(RequestContextMiddleware, metrics=app.state.metrics)
    # The routers carry their whole /v1/... prefix, so a matched route's path is its full template (metrics label).
    for router in (orders.router, products.router):
        app.include_router(router, responses=COMMON_ERRORS)
    app.include_router(health.router)
    app.include_router(webhooks.router)  # signed by Stripe, not by our bearer tokens
    return app

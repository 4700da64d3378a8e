"""The intake API's composition root: `uvicorn api.app:create_app --factory`."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager

import redis
import redis.asyncio
from fastapi import FastAPI

from api import console, events, health, orders, products, webhook_endpoints, webhooks
from api.auth import verification_keys
from api.database import intake_pool
from api.errors import install_error_handlers
from api.metrics import ApiMetrics
from api.middleware import BodyLimitMiddleware, RequestContextMiddleware
from api.openapi_docs import AUTHENTICATED, operation_id
from api.ratelimit import Admission, Rate
from pipeline.config import Settings, get_settings
from pipeline.logs import configure_logging, get_logger
from workers.broker import install
from workers.enqueue import start_saga

log = get_logger(__name__)


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
    install(settings)  # the broker intake, cancels and webhooks send through (workers.enqueue)
    jwt_keys = verification_keys(settings)
    redis_url, database_url = settings.redis_url, settings.database_url
    client = redis.Redis.from_url(redis_url, socket_timeout=2, socket_connect_timeout=2)

    requests = Rate(settings.rate_limit_per_s, settings.rate_limit_burst)
    failures = Rate(settings.auth_failures_per_min / 60, settings.auth_failures_burst)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The limiter's async Redis client and the intake pool belong to the serving event loop: made here.
        # The limiter fails open, so its timeout is short: a hung Redis must not eat the request's budget.
        limiter_timeout = settings.rate_limit_timeout_s
        limiter_redis = redis.asyncio.Redis.from_url(
            redis_url, socket_timeout=limiter_timeout, socket_connect_timeout=limiter_timeout
        )
        async with limiter_redis, intake_pool(database_url, settings.intake_db_budget_s) as pool:
            app.state.admission = Admission(limiter_redis, requests, failures)
            app.state.intake_pool = pool
            metrics_server = app.state.metrics.serve(settings.metrics_host, settings.api_metrics_port)
            try:
                with frozen_startup_heap():
                    yield
            finally:
                if metrics_server is not None:
                    metrics_server.shutdown()
                    metrics_server.server_close()
        client.close()

    app = FastAPI(
        title="orderflow intake API",
        version="1",
        summary="Place orders idempotently and follow their checkout saga. Money is integer cents.",
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
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
    for router in (orders.router, products.router, events.router):
        app.include_router(router, responses=AUTHENTICATED)
    app.include_router(webhook_endpoints.router, responses=AUTHENTICATED)  # shops' own webhooks, by bearer token
    app.include_router(health.router)
    console.install(app, jwt_keys)  # the operator console, /console (admin or console:read sign-ins)
    events.document_webhooks(app)
    if webhooks.enabled(settings):
        app.include_router(webhooks.router)  # signed by Stripe, not by our bearer tokens
    else:
        log.warning("stripe_webhooks_disabled", reason="STRIPE_WEBHOOK_SECRET is not set")
    return app

"""structlog set-up: one JSON (or console) shape for our loggers and the stdlib ones (Dramatiq, uvicorn, stripe)."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog

# uvicorn's CLI gives these plain-text handlers (LOGGING_CONFIG) before it loads the app; their levels are its own.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")


def configure_logging(level: str = "INFO", fmt: str = "json", stream: TextIO | None = None) -> None:
    """Route structlog and the stdlib loggers through one handler and one renderer; safe to call again."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(foreign_pre_chain=shared, processors=_rendering(fmt)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in UVICORN_LOGGERS:
        # Drop uvicorn's own handlers so its lines reach ours; a logger it silenced (--no-access-log) has none and
        # does not propagate, so it stays silent. The levels --log-level set stay as they are.
        uvicorn_logger = logging.getLogger(name)
        if uvicorn_logger.handlers:
            uvicorn_logger.handlers.clear()
            uvicorn_logger.propagate = True
    # The stripe SDK logs two INFO lines per request, httpx one (the carrier's, the webhooks'); our own step logs
    # already say what happened, and rendering those lines cost a ship step a tenth of its CPU.
    for chatty in ("stripe", "httpx"):
        logging.getLogger(chatty).setLevel(max(logging.getLevelName(level), logging.WARNING))


def _rendering(fmt: str) -> list[structlog.types.Processor]:
    """The formatter's last steps: a traceback as text under `exception`, then one JSON line (or console line)."""
    strip = structlog.stdlib.ProcessorFormatter.remove_processors_meta
    if fmt == "json":
        return [strip, structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    return [strip, structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback)]


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)  # type: ignore[no-any-return]

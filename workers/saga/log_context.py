"""Worker middleware: every log line of a saga message carries its order, step, attempt and message id."""

from __future__ import annotations

from typing import Any

import dramatiq
import structlog
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware


class LogContext(Middleware):
    """Bind the message's saga context into structlog's contextvars for the duration of the message."""

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        order_id = message.args[0] if message.args and isinstance(message.args[0], str) else None
        structlog.contextvars.bind_contextvars(
            order_id=order_id,
            step=message.actor_name,
            attempt=message.options.get("retries", 0) + 1,
            message_id=message.message_id,
        )

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        structlog.contextvars.clear_contextvars()

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        structlog.contextvars.clear_contextvars()

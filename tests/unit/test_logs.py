"""Every logger in a process, ours, Dramatiq's and uvicorn's, writes one JSON shape with a readable traceback."""

from __future__ import annotations

import io
import json
import logging
from typing import Any

import structlog
import uvicorn

from pipeline.logs import configure_logging

SHAPE = {"event", "logger", "level", "timestamp"}


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def fail() -> None:
    raise ValueError("card 4000 declined twice")


def test_a_stdlib_exception_is_one_json_line_with_its_logger_level_and_a_readable_traceback(
    log_stream: io.StringIO,
) -> None:
    configure_logging("INFO", "json", log_stream)

    try:
        fail()
    except ValueError:
        logging.getLogger("dramatiq.worker.WorkerThread").exception("Failed to process message %s.", "m-1")

    [line] = lines(log_stream)
    assert SHAPE <= line.keys() and "exc_info" not in line
    assert line["logger"] == "dramatiq.worker.WorkerThread" and line["level"] == "error"
    assert line["event"] == "Failed to process message m-1."
    assert line["exception"].startswith("Traceback (most recent call last):")
    assert 'in fail\n    raise ValueError("card 4000 declined twice")' in line["exception"]
    assert line["exception"].endswith("ValueError: card 4000 declined twice")


def test_a_structlog_exception_has_the_same_shape_with_bound_and_context_fields(log_stream: io.StringIO) -> None:
    configure_logging("INFO", "json", log_stream)
    structlog.contextvars.bind_contextvars(order_id="o-1")

    try:
        fail()
    except ValueError:
        structlog.get_logger("orderflow.saga").bind(step="refund_payment").exception("saga.boom")
        logging.getLogger("dramatiq.worker.WorkerThread").exception("Failed to process message.")

    ours, theirs = lines(log_stream)
    assert ours.keys() - {"step"} == theirs.keys()
    assert ours["logger"] == "orderflow.saga" and ours["level"] == "error" and ours["event"] == "saga.boom"
    assert ours["order_id"] == theirs["order_id"] == "o-1" and ours["step"] == "refund_payment"
    assert ours["exception"].endswith("ValueError: card 4000 declined twice")


def test_exc_info_outside_an_exception_adds_no_exception_field(log_stream: io.StringIO) -> None:
    configure_logging("INFO", "json", log_stream)

    structlog.get_logger("orderflow.saga").error("saga.needs_attention", exc_info=True)

    [line] = lines(log_stream)
    assert "exception" not in line and "exc_info" not in line


def test_uvicorn_loggers_set_up_by_its_cli_emit_our_json_and_keep_its_log_level(log_stream: io.StringIO) -> None:
    # What `uvicorn api.app:create_app --factory --log-level warning` does before it calls create_app.
    uvicorn.Config("api.app:create_app", factory=True, log_level="warning")
    configure_logging("INFO", "json", log_stream)

    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    logging.getLogger("uvicorn.error").warning("Invalid HTTP request received.")
    logging.getLogger("uvicorn.access").warning('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/", "1.1", 200)

    error, access = lines(log_stream)
    assert SHAPE <= error.keys() and SHAPE <= access.keys()
    assert (error["logger"], error["level"]) == ("uvicorn.error", "warning")
    assert error["event"] == "Invalid HTTP request received."
    assert (access["logger"], access["event"]) == ("uvicorn.access", '127.0.0.1:5000 - "GET / HTTP/1.1" 200')


def test_uvicorn_access_lines_stay_silent_with_no_access_log(log_stream: io.StringIO) -> None:
    uvicorn.Config("api.app:create_app", factory=True, log_level="info", access_log=False)
    configure_logging("INFO", "json", log_stream)

    logging.getLogger("uvicorn.access").info('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/", "1.1", 200)
    logging.getLogger("uvicorn.error").info("Application startup complete.")

    assert [line["logger"] for line in lines(log_stream)] == ["uvicorn.error"]


def test_configuring_again_moves_every_logger_to_the_new_stream_and_format_once(log_stream: io.StringIO) -> None:
    first = io.StringIO()
    log = structlog.get_logger("orderflow.reaper")
    configure_logging("INFO", "json", first)
    log.info("reaper.tick")

    configure_logging("INFO", "console", log_stream)
    configure_logging("INFO", "console", log_stream)
    try:
        fail()
    except ValueError:
        log.exception("reaper.failed")
    logging.getLogger("dramatiq.broker").warning("Redis went away")

    assert len(first.getvalue().splitlines()) == 1
    failed, redis_line = log_stream.getvalue().splitlines()[0], log_stream.getvalue().splitlines()[-1]
    assert "reaper.failed" in failed and "[orderflow.reaper]" in failed and "[error" in failed
    assert "ValueError: card 4000 declined twice" in log_stream.getvalue()
    assert "Redis went away" in redis_line and "[dramatiq.broker]" in redis_line
    assert log_stream.getvalue().count("reaper.failed") == 1

"""Log lines of both processes, and the request id that ties a request's lines together.

- Every request has an id: the client's `X-Request-ID` when it is 1-64 characters of
  `[A-Za-z0-9._-]`, else a new one (a malformed, control-character or oversized value is
  replaced, never echoed). It is echoed in the response's `X-Request-ID`, and set on every
  log record made while the request runs (`request_id`).
- The web writes one access line per request (`jobboard.access`: method, path, status,
  duration in ms), the only one: gunicorn's own access log stays off.
- The worker sets `job_id` and `attempt` on the records made while an attempt runs
  (`job_context`), and the request id of the request that queued the job when it had one:
  the job's queue entry carries it (`jobboard.jobs.service.queue_entry`).
- LOG_FORMAT=json makes every line one JSON object (python-json-logger): `time`, `level`,
  `logger`, `message`, and `request_id` or `job_id` and `attempt` when set, plus the
  fields a line adds (the access line's `method`, `path`, `status`, `duration_ms`). The
  default, `text`, stays readable: the same fields as `key=value` after the logger's name.

The context lives in context variables, so it follows a request through its greenlet and
an attempt through its task; code that hands work to a thread copies the context
(`workers.jobs.in_thread`). A record factory (not a handler's filter) puts it on the
record, so every handler sees it, pytest's included.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from flask import Flask, Response, g, request
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

REQUEST_ID_HEADER = "X-Request-ID"
LOG_FORMATS = ("text", "json")
_WELL_FORMED_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
job_id_var: ContextVar[int | None] = ContextVar("job_id", default=None)
attempt_var: ContextVar[int | None] = ContextVar("attempt", default=None)

access_logger = logging.getLogger("jobboard.access")


def request_id_from(value: str | None) -> str:
    """The client's request id if it is well formed, else a new one."""
    if value is not None and _WELL_FORMED_ID.fullmatch(value):
        return value
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    """The id of the request (or of the request that queued the attempt) being served."""
    return request_id_var.get()


# --- the context on every record ---------------------------------------------------------

_CONTEXT = (("request_id", request_id_var), ("job_id", job_id_var), ("attempt", attempt_var))
_base_factory = logging.getLogRecordFactory()


def _record_with_context(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    for name, variable in _CONTEXT:
        value = variable.get()
        if value is not None:
            setattr(record, name, value)
    return record


def install_record_context() -> None:
    """Put the current request id, job id and attempt on every record made from now on
    (once per process)."""
    if logging.getLogRecordFactory() is not _record_with_context:
        logging.setLogRecordFactory(_record_with_context)


@contextmanager
def job_context(
    job_id: int, attempt: int | None = None, request_id: str | None = None
) -> Iterator[None]:
    """Records made inside name the job, its attempt and the request that queued it."""
    tokens = [
        (job_id_var, job_id_var.set(job_id)),
        (attempt_var, attempt_var.set(attempt)),
        (request_id_var, request_id_var.set(request_id)),
    ]
    try:
        yield
    finally:
        for variable, token in reversed(tokens):
            variable.reset(token)


def set_attempt(attempt: int) -> None:
    """The attempt of the job in `job_context`, once it is known (at its start)."""
    attempt_var.set(attempt)


# --- formats -------------------------------------------------------------------------------

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(context)s: %(message)s"
_TEXT_FIELDS = ("request_id", "job_id", "attempt")


class TextFormatter(logging.Formatter):
    """The readable default: the context as ` request_id=...` or ` job_id=... attempt=...`
    after the logger's name."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        record.context = "".join(
            f" {name}={getattr(record, name)}" for name in _TEXT_FIELDS if hasattr(record, name)
        )
        return super().format(record)


def json_formatter() -> logging.Formatter:
    """One JSON object a line: time (ISO 8601, UTC), level, logger, message, the context
    and every field the line adds."""
    return JsonFormatter(
        "%(levelname)s %(name)s %(message)s",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
        reserved_attrs=[*RESERVED_ATTRS, "context"],
    )


def formatter_for(log_format: str) -> logging.Formatter:
    if log_format not in LOG_FORMATS:
        raise SystemExit(f"LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, not {log_format!r}")
    return json_formatter() if log_format == "json" else TextFormatter()


def configure_process(level: str | int, log_format: str) -> logging.Handler:
    """The process's logging: one handler on the root logger, writing to stderr in
    `log_format`, and the context on every record. Returns the handler."""
    install_record_context()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter_for(log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler


# --- the web side ------------------------------------------------------------------------


def init_app(app: Flask) -> None:
    """Request ids and the access line. Registered first, so the id is set before any
    other hook can log or answer."""
    install_record_context()
    app.before_request_funcs.setdefault(None, []).insert(0, _begin_request)
    # Flask runs the app's after-request hooks last-registered first: this one ends.
    app.after_request_funcs.setdefault(None, []).insert(0, _end_request)
    app.teardown_request_funcs.setdefault(None, []).append(_forget_request)


def _begin_request() -> None:
    g.request_started = time.perf_counter()
    g.request_id = request_id_from(request.headers.get(REQUEST_ID_HEADER))
    g.request_id_token = request_id_var.set(g.request_id)


def _end_request(response: Response) -> Response:
    request_id = g.get("request_id") or request_id_from(None)
    response.headers[REQUEST_ID_HEADER] = request_id
    started = g.get("request_started")
    duration_ms = round((time.perf_counter() - started) * 1000, 1) if started else None
    access_logger.info(
        "%s %s %s %s ms",
        request.method,
        request.path,
        response.status_code,
        duration_ms,
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": duration_ms,
        },
    )
    return response


def _forget_request(_error: BaseException | None) -> None:
    token = g.pop("request_id_token", None)
    if token is not None:
        request_id_var.reset(token)

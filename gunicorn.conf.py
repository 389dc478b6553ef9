"""How the web process serves HTTP: gunicorn reads this file from the working directory, so
the Procfile's `web:` line (`gunicorn wsgi:app --bind 0.0.0.0:$PORT ...`) and `run.py`
get it without naming it. Settings given on the command line win over the ones here.

The Procfile exposes gunicorn directly (no buffering proxy is assumed in front of it), so:

- gevent workers: a connection waiting on a slow client is a greenlet, not a worker. A
  sync worker is held by a client that sends its headers one line every 10 s, and four
  such clients took the API down.
- A request's head (request line and headers) must arrive within `keepalive` seconds of
  the connection opening or of the previous answer on it; a client that is slower is
  disconnected. gevent's worker bounds the head's read by `keepalive`; gthread's does not.
- gunicorn's own refusals (a malformed request line, a line over 4094 bytes, too many or
  too large headers) are the API's JSON error body with `nosniff`, never an HTML page.
- No control socket: gunicorn 25+ would otherwise open one under $XDG_RUNTIME_DIR or
  $HOME/.gunicorn, outside the project, for a `gunicornc` nobody here uses.

Nothing here imports the application: psycopg chooses how it waits for the network when
it is first imported, and that must happen in a worker, after gevent has patched it
(psycopg then waits cooperatively; see docs/security.md, "Serving").
"""

from __future__ import annotations

import json
import os
from http import HTTPStatus
from typing import Any

from gunicorn import util
from gunicorn.workers.ggevent import GeventWorker

# Worker processes: WEB_CONCURRENCY (set by Heroku from the dyno size), else 2. The
# Procfile passes the same value with --workers.
workers = int(os.environ.get("WEB_CONCURRENCY") or 2)
# Open connections per worker, slow ones included; past this a worker accepts no more
# until one closes (the others keep serving).
worker_connections = 1000
# Seconds a client has to send a request's head, on a new connection or after an answer.
keepalive = 5
# A worker whose event loop is blocked this long (a runaway computation) is restarted.
timeout = 30
graceful_timeout = 30
# gunicorn's defaults, stated: longer lines and more or larger headers are refused.
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
control_socket_disable = True

# Fixed messages: gunicorn's own would repeat the offending input back to the client.
_REFUSALS = {
    400: "The request is not valid HTTP.",
    403: "The request is forbidden.",
    414: f"The request line is over {limit_request_line} bytes.",
    417: "The request's Expect header cannot be met.",
    431: (
        f"The request has more than {limit_request_fields} headers, or a header over "
        f"{limit_request_field_size} bytes."
    ),
    500: "The server failed to answer this request.",
    501: "The request's Transfer-Encoding is not supported.",
}


def json_error_answer(status: int) -> bytes:
    """A whole HTTP answer carrying the API's error body (`{"code", "status", "message"}`,
    as jobboard/errors.py writes it), for requests gunicorn refuses before the application
    sees them."""
    phrase = HTTPStatus(status).phrase
    message = _REFUSALS.get(status, phrase)
    body = json.dumps({"code": status, "status": phrase, "message": message}).encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\n"
        "Connection: close\r\n"
        "Content-Type: application/json\r\n"
        "X-Content-Type-Options: nosniff\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    util.write_nonblock(sock, json_error_answer(status_int))


class JsonErrorGeventWorker(GeventWorker):
    """gevent's worker whose own error answers are JSON.

    gunicorn writes every answer it makes itself (`Worker.handle_error`, after classifying
    the error into 400, 414, 431, ...) through `gunicorn.util.write_error`, an HTML page;
    this worker replaces that one function, in its own process, with the JSON answer above,
    and keeps gunicorn's classification and logging as they are."""

    def init_process(self) -> None:
        util.write_error = _write_json_error
        super().init_process()


worker_class = JsonErrorGeventWorker

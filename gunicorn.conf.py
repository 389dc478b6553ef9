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
- A request's body (up to the application's MAX_CONTENT_LENGTH) is read before the
  application runs, within BODY_TIMEOUT seconds, else 408: a request never waits on its
  client while it holds a database connection (the way a buffering proxy would do it).
- gunicorn's own refusals (a malformed request line, a line over 4094 bytes, too many or
  too large headers) are the API's JSON error body with `nosniff`, never an HTML page.
- No control socket: gunicorn 25+ would otherwise open one under $XDG_RUNTIME_DIR or
  $HOME/.gunicorn, outside the project, for a `gunicornc` nobody here uses.

Nothing here imports the application: psycopg chooses how it waits for the network when
it is first imported, and that must happen in a worker, after gevent has patched it
(psycopg then waits cooperatively; see docs/security.md, "Serving").
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tempfile
from http import HTTPStatus
from pathlib import Path
from typing import Any

import gevent
from gunicorn import util
from gunicorn.http.body import ChunkedReader, LengthReader
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
# Seconds a client has to send a request's body once its head has arrived (not a gunicorn
# setting: EdgeGeventWorker applies it).
BODY_TIMEOUT = int(os.environ.get("REQUEST_BODY_TIMEOUT") or 30)

# Fixed messages: gunicorn's own would repeat the offending input back to the client.
_REFUSALS = {
    400: "The request is not valid HTTP.",
    403: "The request is forbidden.",
    408: f"The request's body did not arrive within {BODY_TIMEOUT} s.",
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


class EdgeGeventWorker(GeventWorker):
    """gevent's worker with the edge's rules: its own error answers are JSON, and it reads
    a request's body before the application sees the request.

    gunicorn writes every answer it makes itself (`Worker.handle_error`, after classifying
    the error into 400, 414, 431, ...) through `gunicorn.util.write_error`, an HTML page;
    this worker replaces that one function, in its own process, with the JSON answer above,
    and keeps gunicorn's classification and logging as they are."""

    def init_process(self) -> None:
        util.write_error = _write_json_error
        super().init_process()

    def handle_request(self, listener_name: Any, req: Any, sock: Any, addr: Any) -> Any:
        if not self.read_body_ahead(req, sock):
            util.write_nonblock(sock, json_error_answer(408))
            raise StopIteration()  # gunicorn closes the connection
        return super().handle_request(listener_name, req, sock, addr)

    def read_body_ahead(self, req: Any, sock: Any) -> bool:
        """Read the body (at most the application's MAX_CONTENT_LENGTH, plus one byte so a
        chunked body over it is still seen as over) into the request's own buffer, where
        the application then reads it from. False when it did not arrive in time. A body
        declared over the limit is left unread: the application refuses it with 413."""
        limit = getattr(self.wsgi, "config", {}).get("MAX_CONTENT_LENGTH")
        reader = req.body.reader
        if isinstance(reader, LengthReader):
            wanted = reader.length
            if wanted == 0 or (limit is not None and wanted > limit):
                return True
        elif isinstance(reader, ChunkedReader):
            wanted = limit + 1 if limit is not None else -1
        else:
            return True
        if getattr(req, "_expected_100_continue", False):
            # The client waits for this before it sends the body; gunicorn would send it
            # only when the application starts.
            sock.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")
            req._expected_100_continue = False
        with gevent.Timeout(BODY_TIMEOUT, False):
            body = req.body.read(wanted)
            # Body.read serves what its buffer holds (written, positioned at its end) first.
            req.body.buf = io.BytesIO()
            req.body.buf.write(body)
            return True
        return False


worker_class = EdgeGeventWorker

# Prometheus's multiprocess mode (jobboard/metrics.py): each worker writes its metrics to
# files in PROMETHEUS_MULTIPROC_DIR, and a scrape answered by any worker sums them all.
# prometheus_client reads the variable when it is first imported, in the workers (this
# file imports it only in the hooks below, once the workers run). Without a folder of
# the deployment's choosing, one of our own is made for this server and removed with it;
# either is emptied at start, so no dead server's values are summed in.
_metrics_dir_owned = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _metrics_dir_owned:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="jobboard-metrics-")


def on_starting(server: Any) -> None:
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def child_exit(server: Any, worker: Any) -> None:
    """A worker's live gauges go with it; its counters and histograms stay in the sums."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    if _metrics_dir_owned:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


# One access line per request, written by the application (jobboard/logs.py, with the
# request id): gunicorn's own access log stays off. With LOG_FORMAT=json gunicorn's own
# lines (starting, booting workers) are JSON objects too, in the application's shape.
accesslog = None
if os.environ.get("LOG_FORMAT", "text") == "json":
    logconfig_dict = {
        "root": {"level": "INFO", "handlers": []},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["error_console"], "propagate": False},
            "gunicorn.access": {"level": "CRITICAL", "handlers": [], "propagate": False},
        },
        "formatters": {
            "generic": {
                "()": "pythonjsonlogger.json.JsonFormatter",
                "fmt": "%(levelname)s %(name)s %(message)s",
                "rename_fields": {"levelname": "level", "name": "logger"},
                "timestamp": "time",
            }
        },
    }

"""The HTTP boundary's input and response rules, one mechanism each:

- `SafeParser`: the one way request input is read (JSON bodies, query strings, headers,
  forms). JSON deeper than `MAX_JSON_DEPTH`, a string or key holding U+0000 or an unpaired
  surrogate, a number JSON cannot hold (NaN, Infinity, 1e999, an integer too long to read)
  → 422, before any schema sees the data.
- `IdConverter`: the `int` URL converter, bounded to the id columns' range, so
  `/api/jobs/2147483648/` is a 404 like any other unknown id.
- `register_request_rules`: no trailing-slash redirects, 413 decided from `Content-Length` before
  anything reads the body, the security headers on every response, and OPTIONS answered
  `204` with `Allow` (never an HTML content type).
- `bound_request_statements`: PostgreSQL cancels a statement run for a request after
  DATABASE_STATEMENT_TIMEOUT seconds (503, errors.py).
"""

from __future__ import annotations

import json
import math
import re
from datetime import UTC, datetime
from typing import Any, ClassVar

import flask_smorest
import marshmallow as ma
from flask import Flask, Response, abort, g, has_request_context, request
from sqlalchemy import event
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.routing import IntegerConverter

from config import statement_timeout_option
from jobboard.extensions import db

MAX_JSON_DEPTH = 32
# The id columns are PostgreSQL `integer`.
MAX_ID = 2**31 - 1
_BAD_CHARACTERS = re.compile("[\x00\ud800-\udfff]")
BAD_STRING = "Strings may not contain U+0000 or an unpaired surrogate."
TOO_DEEP = f"JSON may not be nested deeper than {MAX_JSON_DEPTH} levels."
BAD_NUMBER = "A number is out of range (NaN, Infinity or too many digits)."

# HTML pages (the dashboard, Swagger UI) load scripts and styles from this origin only:
# no inline script, no framing. Swagger UI's stylesheet draws its icons from data: URIs.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HTML_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def bad_string(value: str) -> bool:
    return _BAD_CHARACTERS.search(value) is not None


def _refuse_constant(name: str) -> float:
    raise ma.ValidationError({"_schema": [BAD_NUMBER]})


def _finite_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise ma.ValidationError({"_schema": [BAD_NUMBER]})
    return value


def check_json_value(data: Any) -> None:
    """Walk a decoded JSON document (iteratively: depth is what is being checked). The
    error names the top-level field that holds the bad value, as schema errors do."""
    top = "_schema"
    stack: list[tuple[Any, int, str]] = [(data, 1, top)]
    while stack:
        value, depth, field = stack.pop()
        if isinstance(value, str):
            if bad_string(value):
                raise ma.ValidationError({field: [BAD_STRING]})
        elif isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise ma.ValidationError({field: [TOO_DEEP]})
            if isinstance(value, dict):
                for key, item in value.items():
                    owner = key if depth == 1 and not bad_string(key) else field
                    if bad_string(key):
                        raise ma.ValidationError({owner: [BAD_STRING]})
                    stack.append((item, depth + 1, owner))
            else:
                stack.extend((item, depth + 1, field) for item in value)


def load_json(raw: bytes | str) -> Any:
    """Decode a JSON body under the rules above; malformed JSON raises JSONDecodeError."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise ma.ValidationError({"_schema": [TOO_DEEP]}) from None
    except json.JSONDecodeError:
        raise
    except ValueError:  # an integer longer than Python will convert
        raise ma.ValidationError({"_schema": [BAD_NUMBER]}) from None
    check_json_value(data)
    return data


class SafeParser(FlaskParser):
    """webargs' Flask parser with the input rules above, for every flask-smorest argument."""

    def _raw_load_json(self, req: Any) -> Any:
        if not is_json_request(req):
            return core.missing
        raw = req.get_data(cache=True)
        if not raw:
            return core.missing
        limit = req.max_content_length
        if req.content_length is None and limit is not None and len(raw) >= limit:
            # A chunked body is cut at the limit by werkzeug, silently: anything left
            # to read means it was over.
            if req.environ["wsgi.input"].read(1):
                abort(413, f"The request body is over {limit} bytes.")
        return load_json(raw)

    def _load_location_data(self, *, schema: ma.Schema, req: Any, location: str) -> Any:
        pairs: Any = ()
        if location in ("query", "querystring"):
            pairs = req.args.items(multi=True)
        elif location == "form":
            pairs = req.form.items(multi=True)
        elif location == "headers":
            pairs = req.headers.items()
        for key, value in pairs:
            if bad_string(key) or bad_string(value):
                field = "_schema" if bad_string(key) else key
                raise ma.ValidationError({field: [BAD_STRING]})
        return super()._load_location_data(schema=schema, req=req, location=location)


class IdConverter(IntegerConverter):
    """`<int:...>` in every route: 0 ≤ value ≤ the id column's maximum, else no match (404)."""

    def __init__(self, map: Any, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", MAX_ID)
        super().__init__(map, *args, **kwargs)


def register_request_rules(app: Flask) -> None:
    """Call before any route is registered: the URL map's settings apply to rules as they
    are added."""
    app.url_map.converters["int"] = IdConverter
    # `/api/jobs` and `/api/jobs/` are the same route, and `//` is not merged by a
    # redirect: werkzeug's redirects carry a Location built from the Host header.
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False

    @app.before_request
    def note_arrival() -> None:
        """When the request arrived (`view_helpers.received_at`): a time it must be later than is
        checked against this, not against a moment after the request waited for a lock."""
        g.received_at = datetime.now(UTC)

    @app.before_request
    def refuse_large_bodies() -> None:
        """Decided from Content-Length before the body is read; a chunked body is cut off
        by werkzeug's limited stream at the same size when it is read."""
        limit = app.config["MAX_CONTENT_LENGTH"]
        if limit is not None and request.content_length and request.content_length > limit:
            abort(413, f"The request body is over {limit} bytes.")

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        if response.mimetype == "text/html":
            response.headers.update(HTML_HEADERS)
        return response

    # Registered last: Flask runs `after_request` functions last-registered first, so the
    # security headers above see this answer as it will be sent.
    @app.after_request
    def empty_options_answer(response: Response) -> Response:
        """Flask answers OPTIONS itself with 200, an empty body and `text/html`, the default
        of any response; the answer is `204 No Content` with `Allow` and no content type."""
        automatic = response.status_code == 200 and "Allow" in response.headers
        if request.method == "OPTIONS" and automatic and not response.get_data():
            response.status_code = 204
            del response.headers["Content-Type"]
            del response.headers["Content-Length"]
        return response


def bound_request_statements(app: Flask) -> None:
    """Connections opened to serve a request ask PostgreSQL to cancel any statement of
    theirs after DATABASE_STATEMENT_TIMEOUT seconds, so that a request never waits on the
    database for longer (a lock held elsewhere, a server shutting down): it answers 503.
    Connections opened outside a request (the worker's tasks, the CLI, migrations) are not
    bounded: their work may be long by design. In the web process every connection is
    opened by a request. Call after the database extension is set up."""
    option = statement_timeout_option(float(app.config["DATABASE_STATEMENT_TIMEOUT"]))
    if option is None:
        return
    with app.app_context():
        engine = db.engine

    @event.listens_for(engine, "do_connect")
    def bound_statements(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        if has_request_context():
            cparams["options"] = f"{cparams.get('options', '')} {option}".strip()


class Blueprint(flask_smorest.Blueprint):
    """flask-smorest's Blueprint reading its arguments (pagination included) through
    `SafeParser`. Every API blueprint is one of these."""

    ARGUMENTS_PARSER = SafeParser()
    PAGINATION_ARGUMENTS_PARSER = SafeParser()


class UtcDateTime(ma.fields.AwareDateTime):
    """An ISO 8601 timestamp with an offset (naive ones are refused), converted to UTC.
    A time that has no UTC equivalent Python can hold (9999-12-31T23:59:59-14:00) is a 422,
    not an overflow later in the service."""

    default_error_messages: ClassVar[dict[str, str]] = {
        "out_of_range": "The timestamp is out of range once converted to UTC."
    }

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("format", "iso")
        super().__init__(**kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(UTC)
        except OverflowError as error:
            raise self.make_error("out_of_range") from error

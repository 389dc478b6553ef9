"""The HTTP boundary's input and response rules, one mechanism each:

- `SafeParser`: the one way request input is read (JSON bodies, query strings, headers,
  forms). JSON deeper than `MAX_JSON_DEPTH`, a string or key holding U+0000 or an unpaired
  surrogate, a number JSON cannot hold (NaN, Infinity, 1e999, an integer too long to read),
  more than `MAX_JSON_VALUES` values → 422, before any schema sees the data; a shape that
  cannot fit the schema → 422 before an error is built per element (`errors.check_shape`);
  error bodies capped (`errors.cap_messages`); malformed bodies without an authenticated
  caller counted per IP, and refused with 429 unread past the limit (`InvalidRequests`).
- `IdConverter`: the `int` URL converter, bounded to the id columns' range, so
  `/api/jobs/2147483648/` is a 404 like any other unknown id.
- `register_request_rules`: no trailing-slash redirects, 413 decided from `Content-Length` before
  anything reads the body, the security headers on every response, and OPTIONS answered
  `204` with `Allow` (never an HTML content type).
- `bound_request_statements`: PostgreSQL cancels a statement run for a request after
  DATABASE_STATEMENT_TIMEOUT seconds (503, errors.py).
"""

from __future__ import annotations

import gc
import json
import math
import re
import time
from datetime import UTC, datetime
from typing import Any, ClassVar, NoReturn

import flask_smorest
import marshmallow as ma
from flask import Flask, Response, abort, current_app, g, has_request_context, request
from flask_jwt_extended import get_jwt
from sqlalchemy import event
from webargs import core
from webargs.flaskparser import FlaskParser, is_json_request
from werkzeug.exceptions import HTTPException
from werkzeug.routing import IntegerConverter

from config import statement_timeout_option
from jobboard import ratelimit
from jobboard.errors import TooManyRequests, cap_messages, check_shape, rollback_quietly
from jobboard.extensions import db

MAX_JSON_DEPTH = 32
# The id columns are PostgreSQL `integer`.
MAX_ID = 2**31 - 1
_BAD_CHARACTERS = re.compile("[\x00\ud800-\udfff]")
BAD_STRING = "Strings may not contain U+0000 or an unpaired surrogate."
TOO_DEEP = f"JSON may not be nested deeper than {MAX_JSON_DEPTH} levels."
BAD_NUMBER = "A number is out of range (NaN, Infinity or too many digits)."
# Values (objects, arrays, strings, numbers, true, false, null) in one JSON body: what
# validating it costs grows with their number, not with its size in bytes.
# Room for the largest body the API takes: an operator's bulk action of 10,000 job ids
# (jobboard.admin.actions.MAX_BULK_IDS) with the rest of its body.
MAX_JSON_VALUES = 10_100
TOO_MANY_VALUES = f"JSON may not hold more than {MAX_JSON_VALUES} values."
# IPs a process remembers as refused; past this, the ones whose refusal ended are forgotten.
MAX_REMEMBERED_IPS = 10_000
_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")

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


def check_json_value(data: Any, *, check_strings: bool = True) -> None:
    """Walk a decoded JSON document (iteratively: depth is what is being checked), counting
    its values as it goes. The error names the top-level field that holds the bad value,
    as schema errors do, and for a field holding a list the element's index too
    (`{"jobs": {"3": [...]}}`, as marshmallow keys a list's errors). `check_strings=False`
    skips the strings, for a text that cannot hold a bad one (`_may_hold_bad_strings`)."""
    stack: list[tuple[Any, int, tuple[str, ...]]] = [(data, 1, ())]
    values = 1
    while stack:
        value, depth, path = stack.pop()
        if isinstance(value, str):
            if bad_string(value):
                raise ma.ValidationError(_at(path, BAD_STRING))
            continue
        if not isinstance(value, dict | list):
            continue  # a number, true, false or null at the top
        if depth > MAX_JSON_DEPTH:
            raise ma.ValidationError(_at(path[:1], TOO_DEEP))
        values += len(value)
        if values > MAX_JSON_VALUES:
            raise ma.ValidationError(_at((), TOO_MANY_VALUES))
        if isinstance(value, dict):
            for key, item in value.items():
                if check_strings and bad_string(key):
                    raise ma.ValidationError(_at(path, BAD_STRING))
                if isinstance(item, dict | list) or (check_strings and isinstance(item, str)):
                    stack.append((item, depth + 1, _field_path(path, depth, key)))
        else:
            stack.extend(
                (item, depth + 1, (*path, str(index)) if depth == 2 else path)
                for index, item in enumerate(value)
                if isinstance(item, dict | list) or (check_strings and isinstance(item, str))
            )


def _field_path(path: tuple[str, ...], depth: int, key: str) -> tuple[str, ...]:
    """Where the value under `key` of an object at `depth` is reported: a top-level field,
    or a field of an object in a top-level field's list (`jobs.3.name`)."""
    if depth == 1:
        return (key,)
    if depth == 3 and len(path) == 2:
        return (*path, key)
    return path


def _at(path: tuple[str, ...], message: str) -> dict[str, Any]:
    """An error body's `{field: {index: [message]}}` for `path` (empty: `_schema`)."""
    errors: Any = [message]
    for key in reversed(path or ("_schema",)):
        errors = {key: errors}
    return errors


def _values_at_most(text: str) -> int:
    """At least as many as the JSON values in `text`: every value but the outermost one
    follows a `,` or opens its array or object (keys are strings, not counted)."""
    return text.count(",") + text.count("[") + text.count("{") + 1


def _too_many_values(text: str) -> bool | None:
    """Whether a JSON text holds more than MAX_JSON_VALUES values, decided from character
    counts before anything is decoded (decoding 1 MiB of `[[],[],...]` alone costs tens of
    ms); None when only decoding can tell.

    - Few `,` `[` `{` at all: certainly not too many.
    - Many `"` not preceded by a backslash: a string has two, and at most its closing one
      follows a backslash, so there are at least (quotes - backslash-quotes) strings,
      each a key or a value; an object has a value per key.
    - Few strings and escapes: removing the strings (cheap then) leaves the punctuation
      that counts, an empty array or object counting once.
    """
    if _values_at_most(text) <= MAX_JSON_VALUES:
        return False
    quotes, escaped = text.count('"'), text.count('\\"')
    if quotes - escaped > 2 * MAX_JSON_VALUES:
        return True
    if quotes + text.count("\\") <= 4 * MAX_JSON_VALUES:
        bare = _JSON_STRING.sub("", text)
        empty = bare.count("[]") + bare.count("{}")
        return _values_at_most(bare) - empty > MAX_JSON_VALUES
    return None


def _may_hold_bad_strings(text: str) -> bool:
    """U+0000 and surrogates can only come from `\\u` escapes: raw control characters in
    a string are invalid JSON, and UTF-8 cannot encode a surrogate."""
    return _SUSPECT_ESCAPE.search(text) is not None


def load_json(raw: bytes | str) -> Any:
    """Decode a JSON body under the rules above; malformed JSON raises JSONDecodeError."""
    text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    if _too_many_values(text):
        raise ma.ValidationError({"_schema": [TOO_MANY_VALUES]})
    try:
        # The cyclic garbage collector would walk every container decoded so far, again
        # and again, while thousands are created: nothing here can form a cycle.
        collecting = gc.isenabled()
        gc.disable()
        try:
            data = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite_float)
        finally:
            if collecting:
                gc.enable()
    except RecursionError:
        raise ma.ValidationError({"_schema": [TOO_DEEP]}) from None
    except json.JSONDecodeError:
        raise
    except ValueError:  # an integer longer than Python will convert
        raise ma.ValidationError({"_schema": [BAD_NUMBER]}) from None
    check_json_value(data, check_strings=_may_hold_bad_strings(text))
    return data


# The locations of a request body: the ones an unauthenticated caller can make us decode.
BODY_LOCATIONS = frozenset({"json", "form", "json_or_form"})


class SafeParser(FlaskParser):
    """webargs' Flask parser with the input rules above, for every flask-smorest argument.

    A body refused as malformed (400, 413, 422) for a caller without an authenticated
    token counts against INVALID_REQUESTS_PER_IP; once that IP's budget is spent, its
    unauthenticated bodies are refused with 429 before they are read (`InvalidRequests`).
    """

    def parse(self, argmap: Any, req: Any = None, *, location: str | None = None, **kwargs: Any):
        guarded = (location or self.location) in BODY_LOCATIONS and not _authenticated()
        if guarded:
            invalid_requests().refuse_if_spent()
        try:
            return super().parse(argmap, req, location=location, **kwargs)
        except HTTPException as error:
            if guarded and error.code in (400, 413, 422):
                invalid_requests().count()
            raise

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

    def pre_load(self, location_data: Any, *, schema: ma.Schema, req: Any, location: str) -> Any:
        if location == "json":
            check_shape(schema, location_data)
        return super().pre_load(location_data, schema=schema, req=req, location=location)

    def handle_error(
        self,
        error: ma.ValidationError,
        req: Any,
        schema: ma.Schema,
        *,
        error_status_code: int | None,
        error_headers: Any,
    ) -> NoReturn:
        super().handle_error(
            ma.ValidationError(cap_messages(error.messages)),
            req,
            schema,
            error_status_code=error_status_code,
            error_headers=error_headers,
        )


def _authenticated() -> bool:
    """Whether the request carried a valid access token, verified before its body is read
    (protected views verify it first)."""
    try:
        return bool(get_jwt())
    except RuntimeError:  # nothing verified a token
        return False


class InvalidRequests:
    """INVALID_REQUESTS_PER_IP, counted in PostgreSQL (shared by every process, kept across
    restarts); each process remembers which IPs it saw refused, and until when, so that a
    refused IP costs no query and no decoding."""

    def __init__(self) -> None:
        self.refused_until: dict[str, float] = {}

    def refuse_if_spent(self) -> None:
        ip = client_ip()
        until = self.refused_until.get(ip)
        if until is None:
            return
        seconds = math.ceil(until - time.monotonic())
        if seconds <= 0:
            del self.refused_until[ip]
            return
        limit = ratelimit.INVALID_REQUESTS_PER_IP
        raise TooManyRequests(
            f"Too many requests: {limit.describe()}. Try again in {seconds} s.",
            headers={"Retry-After": str(seconds)},
        )

    def count(self) -> None:
        ip = client_ip()
        try:
            ratelimit.take(ratelimit.INVALID_REQUESTS_PER_IP, ip)
        except TooManyRequests as refused:
            rollback_quietly()
            if len(self.refused_until) > MAX_REMEMBERED_IPS:
                now = time.monotonic()
                self.refused_until = {k: v for k, v in self.refused_until.items() if v > now}
            self.refused_until[ip] = time.monotonic() + int(refused.headers["Retry-After"])
            raise
        db.session.commit()


def invalid_requests() -> InvalidRequests:
    """The application's InvalidRequests (one per app: tests build many)."""
    return current_app.extensions.setdefault("jobboard_invalid_requests", InvalidRequests())


def client_ip() -> str:
    """The caller's IP address: the socket's peer, or with TRUSTED_PROXIES=N the N-th
    address from the right of X-Forwarded-For (ProxyFix, set up in create_app)."""
    return request.remote_addr or ratelimit.UNKNOWN_IP


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

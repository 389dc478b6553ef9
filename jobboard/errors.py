"""Domain errors raised by the services, and the handlers that turn them into the
flask-smorest error body: `{"code", "status", "message", "errors"?}`.

Whatever the input, an error body stays small (`cap_messages`), and input whose errors
would be one per element is refused before they are built (`check_shape`)."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import marshmallow as ma
import psycopg
import psycopg_pool
from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from procrastinate.exceptions import ConnectorException
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.exc import InterfaceError as SAInterfaceError
from sqlalchemy.exc import OperationalError as SAOperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from jobboard.extensions import db


class DomainError(Exception):
    status_code: int = 400

    def __init__(
        self,
        message: str,
        *,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.errors = errors
        self.headers = headers or {}


class BadRequest(DomainError):
    status_code = 400


class Unauthorized(DomainError):
    status_code = 401


class Forbidden(DomainError):
    status_code = 403


class NotFound(DomainError):
    status_code = 404


class Conflict(DomainError):
    status_code = 409


class Unprocessable(DomainError):
    status_code = 422


class TooManyRequests(DomainError):
    status_code = 429


# An error body lists at most this many fields, elements or messages at each level.
MAX_ERRORS_LISTED = 20
MAX_ERROR_DEPTH = 8
MAX_ERROR_MESSAGE = 500


def check_shape(schema: ma.Schema, data: Any) -> None:
    """Refuse data whose shape cannot fit `schema`, before marshmallow builds an error for
    each element of it: more than MAX_ERRORS_LISTED unknown keys, a list longer than its
    field allows (checked before its elements are), and so on in nested schemas."""
    errors = _shape_errors(schema, data)
    if errors:
        raise ma.ValidationError(errors)


def _shape_errors(schema: ma.Schema, data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        return {}  # marshmallow's one "Invalid input type." says it
    by_key = {field.data_key or name: field for name, field in schema.load_fields.items()}
    if schema.unknown == ma.RAISE:
        unknown = [key for key in data if key not in by_key]
        if len(unknown) > MAX_ERRORS_LISTED:
            errors: dict[str, Any] = {
                key: ["Unknown field."] for key in unknown[:MAX_ERRORS_LISTED]
            }
            errors["_schema"] = [
                f"{len(unknown)} unknown fields; the first {MAX_ERRORS_LISTED} are listed."
            ]
            return errors
    errors = {}
    for key, field in by_key.items():
        value = data.get(key)
        if isinstance(field, ma.fields.List) and isinstance(value, list):
            longest = _max_length(field)
            if longest is not None and len(value) > longest:
                errors[key] = [f"Longer than maximum length {longest}."]
            elif isinstance(field.inner, ma.fields.Nested):
                for index, item in enumerate(value):
                    if found := _shape_errors(field.inner.schema, item):
                        errors[key] = {index: found}
                        break
        elif isinstance(field, ma.fields.Nested) and not field.many:
            if found := _shape_errors(field.schema, value):
                errors[key] = found
    return errors


def _max_length(field: ma.fields.Field) -> int | None:
    validators = field.validators if isinstance(field.validators, list) else []
    lengths = [v.max for v in validators if isinstance(v, ma.validate.Length) and v.max]
    return min(lengths) if lengths else None


def cap_messages(messages: Any, depth: int = 0) -> Any:
    """An error body lists at most MAX_ERRORS_LISTED entries at each level (and says how
    many it left out), and at most MAX_ERROR_DEPTH levels: its size stays small whatever
    the body that caused it."""
    if isinstance(messages, dict):
        if depth >= MAX_ERROR_DEPTH:
            return ["Invalid value."]
        items = list(messages.items())
        capped = {key: cap_messages(value, depth + 1) for key, value in items[:MAX_ERRORS_LISTED]}
        if len(items) > MAX_ERRORS_LISTED:
            note = f"{len(items) - MAX_ERRORS_LISTED} more errors are not listed."
            capped.setdefault("_schema", [])
            capped["_schema"] = [*capped["_schema"], note][:MAX_ERRORS_LISTED]
        return capped
    if isinstance(messages, list):
        return [cap_messages(message, depth + 1) for message in messages[:MAX_ERRORS_LISTED]]
    if isinstance(messages, str) and len(messages) > MAX_ERROR_MESSAGE:
        return messages[:MAX_ERROR_MESSAGE] + "…"
    return messages


def error_body(code: int, message: str, errors: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "status": HTTPStatus(code).phrase, "message": message}
    if errors:
        body["errors"] = cap_messages(errors)
    return body


def error_response(
    code: int,
    message: str,
    errors: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> ResponseReturnValue:
    return jsonify(error_body(code, message, errors)), code, headers or {}


DATABASE_UNAVAILABLE = "The database is unavailable; try again in a moment."
# Seconds a client is asked to wait while the database is away.
DATABASE_RETRY_AFTER = "1"


def database_unreachable(error: BaseException) -> bool:
    """Whether an exception means "cannot talk to PostgreSQL" (down, restarting, network
    gone, not answering within the connect or statement timeout, every pooled connection
    busy past the pool's timeout) rather than a bug or bad data: those stay 500 so that
    they are seen."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, SAOperationalError | SAInterfaceError):
            return True
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, psycopg.OperationalError | psycopg.InterfaceError):
            return True
        if isinstance(current, psycopg_pool.PoolTimeout | PoolTimeout):
            return True
        current = current.__cause__ or current.__context__
    return False


def rollback_quietly() -> None:
    """Roll back the request's transaction before answering an error. On a connection
    that died meanwhile (the database restarting), the rollback itself fails: the
    connection is discarded instead (the pool connects afresh), and the answer stands."""
    try:
        db.session.rollback()
    except Exception:  # the connection is gone; nothing of the transaction was committed
        db.session().invalidate()  # scoped_session does not proxy invalidate()


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def handle_domain_error(error: DomainError) -> ResponseReturnValue:
        rollback_quietly()
        return error_response(error.status_code, error.message, error.errors, error.headers)

    @app.errorhandler(IntegrityError)
    def handle_integrity_error(error: IntegrityError) -> ResponseReturnValue:
        # Reached only when a uniqueness rule lost a race that the service had checked for.
        rollback_quietly()
        return error_response(409, "The request conflicts with the current state of the resource.")

    @app.errorhandler(DBAPIError)
    @app.errorhandler(PoolTimeout)
    @app.errorhandler(psycopg.Error)
    @app.errorhandler(psycopg_pool.PoolTimeout)
    @app.errorhandler(ConnectorException)
    def handle_database_unavailable(error: Exception) -> ResponseReturnValue:
        if not database_unreachable(error):
            raise error
        rollback_quietly()
        app.logger.warning("database unreachable: %s", error)
        return error_response(
            503, DATABASE_UNAVAILABLE, headers={"Retry-After": DATABASE_RETRY_AFTER}
        )

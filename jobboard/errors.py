"""Domain errors raised by the services, and the handlers that turn them into the
flask-smorest error body: `{"code", "status", "message", "errors"?}`."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

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


def error_body(code: int, message: str, errors: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"code": code, "status": HTTPStatus(code).phrase, "message": message}
    if errors:
        body["errors"] = errors
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


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def handle_domain_error(error: DomainError) -> ResponseReturnValue:
        db.session.rollback()
        return error_response(error.status_code, error.message, error.errors, error.headers)

    @app.errorhandler(IntegrityError)
    def handle_integrity_error(error: IntegrityError) -> ResponseReturnValue:
        # Reached only when a uniqueness rule lost a race that the service had checked for.
        db.session.rollback()
        return error_response(409, "The request conflicts with the current state of the resource.")

    @app.errorhandler(DBAPIError)
    @app.errorhandler(PoolTimeout)
    @app.errorhandler(psycopg.Error)
    @app.errorhandler(psycopg_pool.PoolTimeout)
    @app.errorhandler(ConnectorException)
    def handle_database_unavailable(error: Exception) -> ResponseReturnValue:
        if not database_unreachable(error):
            raise error
        try:
            db.session.rollback()
        except Exception:  # the connection is gone; the pool discards it
            db.session.invalidate()
        app.logger.warning("database unreachable: %s", error)
        return error_response(
            503, DATABASE_UNAVAILABLE, headers={"Retry-After": DATABASE_RETRY_AFTER}
        )

"""Domain errors raised by the services, and the handlers that turn them into the
flask-smorest error body: `{"code", "status", "message", "errors"?}`."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

from flask import Flask, jsonify
from flask.typing import ResponseReturnValue
from sqlalchemy.exc import IntegrityError

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

"""JWT wiring: identity, persisted revocation, and errors in the flask-smorest body."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any, ParamSpec, TypeVar

from flask_jwt_extended import JWTManager, current_user, verify_jwt_in_request
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert

from jobboard.errors import Forbidden, error_response
from jobboard.extensions import db
from jobboard.models import RevokedToken, User

P = ParamSpec("P")
R = TypeVar("R")


def register_jwt_callbacks(jwt: JWTManager) -> None:
    @jwt.user_identity_loader
    def user_identity(user: User | int | str) -> str:
        return str(user.id if isinstance(user, User) else user)

    @jwt.user_lookup_loader
    def load_user(_header: dict, payload: dict) -> User | None:
        return db.session.get(User, int(payload["sub"]))

    @jwt.token_in_blocklist_loader
    def is_revoked(_header: dict, payload: dict) -> bool:
        return (
            db.session.scalar(select(RevokedToken.jti).where(RevokedToken.jti == payload["jti"]))
            is not None
        )

    def unauthorized(message: str):
        return error_response(401, message, headers={"WWW-Authenticate": "Bearer"})

    jwt.unauthorized_loader(lambda reason: unauthorized(f"Missing access token: {reason}"))
    jwt.invalid_token_loader(lambda reason: unauthorized(f"Invalid token: {reason}"))
    jwt.expired_token_loader(lambda _h, _p: unauthorized("Token has expired"))
    jwt.revoked_token_loader(lambda _h, _p: unauthorized("Token has been revoked"))
    jwt.needs_fresh_token_loader(lambda _h, _p: unauthorized("Fresh token required"))
    jwt.user_lookup_error_loader(lambda _h, _p: unauthorized("Token user no longer exists"))
    jwt.token_verification_failed_loader(lambda _h, _p: unauthorized("Token rejected"))


def revoke_token(payload: dict[str, Any]) -> None:
    """Persist the token's jti so it stays revoked across restarts, until it expires."""
    db.session.add(
        RevokedToken(
            jti=payload["jti"],
            token_type=payload.get("type", "access"),
            user_id=int(payload["sub"]),
            expires_at=datetime.fromtimestamp(payload["exp"], tz=UTC),
        )
    )


def revoke_token_once(payload: dict[str, Any]) -> bool:
    """Persist the token's revocation unless it is already revoked; True when this call
    revoked it. Two requests racing with the same token cannot both win: the second
    insert waits for the first and then finds the jti taken."""
    inserted = db.session.execute(
        pg_insert(RevokedToken)
        .values(
            jti=payload["jti"],
            token_type=payload.get("type", "access"),
            user_id=int(payload["sub"]),
            revoked_at=datetime.now(UTC),
            expires_at=datetime.fromtimestamp(payload["exp"], tz=UTC),
        )
        .on_conflict_do_nothing(index_elements=[RevokedToken.jti])
        .returning(RevokedToken.jti)
    ).scalar_one_or_none()
    return inserted is not None


def login_required(view: Callable[P, R]) -> Callable[P, R]:
    """Any valid, unrevoked access token."""

    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        verify_jwt_in_request()
        return view(*args, **kwargs)

    return wrapper


def verified_required(view: Callable[P, R]) -> Callable[P, R]:
    """A valid access token of a user whose email is verified (403 otherwise)."""

    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        verify_jwt_in_request()
        if not current_user.is_email_verified:
            raise Forbidden("Verify your email address first.")
        return view(*args, **kwargs)

    return wrapper


def caller() -> User:
    """The authenticated user of the current request."""
    return current_user._get_current_object()

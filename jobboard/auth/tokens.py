"""JWT wiring: identity, persisted revocation, and errors in the flask-smorest body.

Two kinds of revocation, both checked by one indexed query per authenticated request
(`token_state`): a single token by its `jti` (logout, refresh rotation), and every token
of a user at once by generation. Each token carries the user's `token_generation` at issue
in its `gen` claim; bumping the user's generation (password change or reset, logout from
everywhere) makes every earlier token stale, with nothing stored per token. A counter
rather than an "issued after" timestamp: a login in the same second as the revocation
gets a valid token.

Refresh-token families (reuse detection, as the OAuth 2.0 Security BCP describes it): a
login starts a family, named in the `fam` claim of its tokens, and each refresh passes
the family on to the pair it issues. A refresh token is good for one refresh; presented
again, it was copied, and whoever holds the newer tokens of its family may be the thief:
every token of the family is revoked (`revoke_family`), access tokens included. The
revocation is one `revoked_tokens` row keyed `family:<id>`, found by the same query that
looks the jti up.

A view whose requests count against the caller's plan quotas says so
(`counts_against_quotas`): its token lookup, the first statement of the request's
transaction, then also locks the caller's row and brings the plan, so the quota check
needs no statement of its own (jobboard.quotas)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from typing import Any, ClassVar, ParamSpec, TypeVar

from flask import current_app, g, request
from flask.views import MethodView
from flask_jwt_extended import JWTManager, current_user, verify_jwt_in_request
from sqlalchemy import exists, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm.attributes import set_committed_value

from jobboard import quotas
from jobboard.errors import Forbidden, error_response
from jobboard.extensions import db
from jobboard.models import RevokedToken, User

GENERATION_CLAIM = "gen"
FAMILY_CLAIM = "fam"
COUNTS_AGAINST_QUOTAS = "_jobboard_counts_against_quotas"

P = ParamSpec("P")
R = TypeVar("R")


def register_jwt_callbacks(jwt: JWTManager) -> None:
    @jwt.user_identity_loader
    def user_identity(user: User | int | str) -> str:
        return str(user.id if isinstance(user, User) else user)

    @jwt.additional_claims_loader
    def generation_claim(identity: User | int | str) -> dict[str, int]:
        if isinstance(identity, User):
            return {GENERATION_CLAIM: identity.token_generation}
        generation = db.session.scalar(
            select(User.token_generation).where(User.id == int(identity))
        )
        return {GENERATION_CLAIM: generation or 0}

    @jwt.token_in_blocklist_loader
    def is_revoked(_header: dict, payload: dict) -> bool:
        user, jti_revoked, family_revoked = token_state(
            payload, lock_for_quotas=_view_counts_against_quotas()
        )
        # Kept for `load_user`, which flask-jwt-extended calls next: no second query.
        g.jobboard_token_user = user
        if user is None:
            return False  # the user lookup that follows answers "no longer exists"
        if jti_revoked and payload.get("type") == "refresh" and not family_revoked:
            refresh_token_reused(payload)
        return (
            jti_revoked
            or family_revoked
            or payload.get(GENERATION_CLAIM, 0) != user.token_generation
        )

    @jwt.user_lookup_loader
    def load_user(_header: dict, payload: dict) -> User | None:
        user = g.pop("jobboard_token_user", None)
        if user is not None and user.id == int(payload["sub"]):
            return user
        return db.session.get(User, int(payload["sub"]))

    def unauthorized(message: str):
        return error_response(401, message, headers={"WWW-Authenticate": "Bearer"})

    jwt.unauthorized_loader(lambda reason: unauthorized(f"Missing access token: {reason}"))
    jwt.invalid_token_loader(lambda reason: unauthorized(f"Invalid token: {reason}"))
    jwt.expired_token_loader(lambda _h, _p: unauthorized("Token has expired"))
    jwt.revoked_token_loader(lambda _h, _p: unauthorized("Token has been revoked"))
    jwt.needs_fresh_token_loader(lambda _h, _p: unauthorized("Fresh token required"))
    jwt.user_lookup_error_loader(lambda _h, _p: unauthorized("Token user no longer exists"))
    jwt.token_verification_failed_loader(lambda _h, _p: unauthorized("Token rejected"))


def token_state(
    payload: dict[str, Any], lock_for_quotas: bool = False
) -> tuple[User | None, bool, bool]:
    """The token's user, whether its jti is revoked and whether its family is: one query,
    three index lookups. With `lock_for_quotas`, the same query locks the user's row and
    loads the plan for the quota checks of the rest of the transaction
    (`quotas.with_user_locked`)."""
    query = select(
        User,
        exists().where(RevokedToken.jti == payload["jti"]),
        exists().where(RevokedToken.jti == _family_key(payload)),
    ).where(User.id == int(payload["sub"]))
    if lock_for_quotas:
        query = quotas.with_user_locked(query)
    row = db.session.execute(query).one_or_none()
    if row is None:
        return None, False, False
    if lock_for_quotas:
        quotas.held_lock(row[0], row[-1])
    return row[0], bool(row[1]), bool(row[2])


def new_family() -> str:
    """The name of a new refresh-token family (one per login)."""
    return uuid.uuid4().hex


def _family_key(payload: dict[str, Any]) -> str:
    # A token issued before families existed has none: its key matches no row.
    return f"family:{payload.get(FAMILY_CLAIM, '')}"


def revoke_family(payload: dict[str, Any]) -> None:
    """Revoke every token of the family of `payload` (on the current transaction). Every
    token of the family was issued by now, so none lives past now plus the refresh
    tokens' lifetime: the revocation is kept that long."""
    if not payload.get(FAMILY_CLAIM):
        return
    now = datetime.now(UTC)
    db.session.execute(
        pg_insert(RevokedToken)
        .values(
            jti=_family_key(payload),
            token_type="family",
            user_id=int(payload["sub"]),
            revoked_at=now,
            expires_at=now + current_app.config["JWT_REFRESH_TOKEN_EXPIRES"],
        )
        .on_conflict_do_nothing(index_elements=[RevokedToken.jti])
    )


def refresh_token_reused(payload: dict[str, Any]) -> None:
    """A refresh token that was already used (or revoked) came back: revoke its family
    and commit, whatever the request then answers."""
    revoke_family(payload)
    db.session.commit()


def counts_against_quotas(view: Callable[P, R]) -> Callable[P, R]:
    """Mark a view (a MethodView's method) whose requests count against the caller's plan
    quotas: its token lookup locks the caller's row and brings the plan (`token_state`).
    The lock is then held from the request's first statement to its commit."""
    setattr(view, COUNTS_AGAINST_QUOTAS, True)
    return view


def _view_counts_against_quotas() -> bool:
    view = current_app.view_functions.get(request.endpoint or "")
    view_class = getattr(view, "view_class", None)
    if view_class is not None:  # a MethodView: the method that serves this request
        view = getattr(view_class, request.method.lower(), None)
    return getattr(view, COUNTS_AGAINST_QUOTAS, False)


def revoke_all_tokens(user: User) -> None:
    """Make every token issued to `user` so far stale (on the current transaction)."""
    generation = db.session.execute(
        update(User)
        .where(User.id == user.id)
        .values(token_generation=User.token_generation + 1)
        .returning(User.token_generation)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    set_committed_value(user, "token_generation", generation)


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


class VerifiedUserView(MethodView):
    """A view for verified users only. Authentication runs before flask-smorest parses
    the arguments: strangers get 401/403, never a 422 about a body they had no business
    sending."""

    decorators: ClassVar[list[Callable[..., Any]]] = [verified_required]


def caller() -> User:
    """The authenticated user of the current request."""
    return current_user._get_current_object()


def admin_required(view: Callable[P, R]) -> Callable[P, R]:
    """A valid access token of an admin: 401 without one, 403 for anybody else."""

    @wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        verify_jwt_in_request()
        if not current_user.is_admin:
            raise Forbidden("Only admins may use the operations API.")
        return view(*args, **kwargs)

    return wrapper


class AdminView(MethodView):
    """A view for admins only, authenticated before any argument is parsed."""

    decorators: ClassVar[list[Callable[..., Any]]] = [admin_required]

"""Browser sessions: sign in, refresh and sign out with cookies that page script cannot
read (flask-jwt-extended's cookie mode).

Signing in sets the access token in an HttpOnly cookie for the whole site and the refresh
token in an HttpOnly cookie sent only to `/api/session/`; both SameSite=Lax, and `Secure`
except in development and the tests. Beside each, flask-jwt-extended sets a readable CSRF
cookie (`csrf_access_token`, `csrf_refresh_token`): every change made with a cookie must
echo its value in `X-CSRF-TOKEN` (double submit), or it is refused with 403. A request
that carries `Authorization: Bearer` is judged by that header alone, so API clients are
unaffected. The rules of tokens are the API's own: the same login limits, refresh
rotation with reuse detection, revocation on sign-out, on "sign out everywhere" and on a
password change."""

from __future__ import annotations

from functools import partial
from typing import Any

from flask import after_this_request
from flask.typing import ResponseReturnValue
from flask.views import MethodView
from flask_jwt_extended import (
    get_jwt,
    jwt_required,
    set_access_cookies,
    set_refresh_cookies,
    unset_jwt_cookies,
)

from jobboard.auth import service
from jobboard.auth.schemas import LoginIn, ProfileOut
from jobboard.auth.tokens import caller
from jobboard.errors import error_response
from jobboard.models import User
from jobboard.request_rules import client_ip
from jobboard.view_helpers import Blueprint, documented_error

blp = Blueprint(
    "sessions",
    __name__,
    url_prefix="/api",
    description=(
        "Browser sessions for the web app: the tokens travel in HttpOnly, SameSite=Lax "
        "cookies (Secure in production) that page script cannot read. Every change made "
        "with the cookies (POST, PUT, PATCH, DELETE, on any endpoint) must carry the value "
        "of the readable `csrf_access_token` cookie in the `X-CSRF-TOKEN` header "
        "(`csrf_refresh_token` for the refresh), or it is refused with 403. Requests with "
        "`Authorization: Bearer` are judged by the header alone. The login limits, token "
        "rotation and revocation are those of the token endpoints."
    ),
)

error = partial(documented_error, blp)
COOKIE_AUTH = [{"cookieAuth": []}]
CSRF_REFUSED = "Missing or wrong X-CSRF-TOKEN (the double-submit CSRF token)."


def _set_session_cookies(tokens: service.TokenPair) -> None:
    @after_this_request
    def set_cookies(response):  # type: ignore[no-untyped-def]
        set_access_cookies(response, tokens.access_token)
        set_refresh_cookies(response, tokens.refresh_token)
        return response


def _clear_session_cookies() -> None:
    @after_this_request
    def clear_cookies(response):  # type: ignore[no-untyped-def]
        unset_jwt_cookies(response)
        return response


@blp.route("/session/")
class Session(MethodView):
    @blp.arguments(LoginIn)
    @blp.response(200, ProfileOut)
    @error(401, "Wrong email or password; both give the same answer.")
    @error(403, "The email address is not verified yet.")
    @error(429, "Too many failed logins (the limits of POST /api/login/).")
    def post(self, data: dict[str, Any]) -> User:
        """Sign in: set the session cookies; the answer is the signed-in profile."""
        user = service.authenticate(data["email"], data["password"], client_ip())
        _set_session_cookies(service.issue_tokens(user))
        return user

    @jwt_required()
    @blp.doc(security=COOKIE_AUTH)
    @blp.response(204)
    @error(401, "Missing, invalid, expired or revoked access token.")
    @error(403, CSRF_REFUSED)
    def delete(self) -> None:
        """Sign out: revoke this session's tokens and clear its cookies."""
        service.end_session(get_jwt())
        _clear_session_cookies()


@blp.route("/session/all/")
class SessionsEverywhere(MethodView):
    @jwt_required()
    @blp.doc(security=COOKIE_AUTH)
    @blp.response(204)
    @error(401, "Missing, invalid, expired or revoked access token.")
    @error(403, CSRF_REFUSED)
    def delete(self) -> None:
        """Sign out everywhere: revoke every token of the caller, on every device."""
        service.log_out_everywhere(caller())
        _clear_session_cookies()


@blp.route("/session/refresh/")
class SessionRefresh(MethodView):
    @jwt_required(refresh=True, locations=["cookies"])
    @blp.doc(security=COOKIE_AUTH)
    @blp.response(200, ProfileOut)
    @error(
        401,
        "Missing, expired or revoked refresh cookie. A refresh cookie already traded that "
        "comes back revokes every token of its sign-in.",
    )
    @error(403, "Missing or wrong X-CSRF-TOKEN (the value of the csrf_refresh_token cookie).")
    def post(self) -> User:
        """Trade the refresh cookie for new session cookies (it works once)."""
        _set_session_cookies(service.rotate_refresh_token(caller(), get_jwt()))
        return caller()


def csrf_refused(reason: Exception) -> ResponseReturnValue:
    """A cookie request without the right double-submit token: 403, not 401 (the caller
    is signed in; the request did not come from the app's own pages)."""
    return error_response(403, f"{CSRF_REFUSED} ({reason})")

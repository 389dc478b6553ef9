"""Auth endpoints: registration, email verification, tokens and the caller's profile."""

from __future__ import annotations

from functools import partial
from typing import Any

from flask.views import MethodView
from flask_jwt_extended import get_jwt, jwt_required

from jobboard.auth import service
from jobboard.auth.schemas import (
    LoginIn,
    LogoutIn,
    MessageOut,
    PasswordChangeIn,
    ProfileOut,
    ProfilePatchIn,
    RegisteredUserOut,
    RegisterIn,
    ResendOtpIn,
    TokenPairOut,
    VerifyEmailIn,
)
from jobboard.auth.tokens import caller, login_required
from jobboard.edges import Blueprint
from jobboard.models import User
from jobboard.views import documented_error

blp = Blueprint(
    "auth",
    __name__,
    url_prefix="/api",
    description=(
        "Accounts: register, verify the email address with a 6-digit code sent by email, "
        "log in for JWT access and refresh tokens, and manage the caller's profile."
    ),
)

BEARER = [{"bearerAuth": []}]


error = partial(documented_error, blp)


@blp.route("/register/")
class Register(MethodView):
    @blp.arguments(RegisterIn)
    @blp.response(201, RegisteredUserOut)
    @error(
        409,
        "An account with this email address (in any letter case) already exists. An account "
        "still waiting for verification gets a new code from POST /api/resend-otp/.",
    )
    def post(self, data: dict[str, Any]) -> User:
        """Create an account and email it a verification code.

        The email is queued and sent by the worker; the request never waits for SMTP.
        With no MAIL_SERVER configured, the worker writes the email, code included, to its
        log. 422 for an invalid address or a weak password (under `errors.json.password`).
        """
        return service.register_user(data["email"], data["password"])


@blp.route("/verify-email/")
class VerifyEmail(MethodView):
    @blp.arguments(VerifyEmailIn)
    @blp.response(200, RegisteredUserOut)
    @error(
        400,
        "The code is wrong, or it has expired (the message says which). An unknown email "
        "address gets the same answer as a wrong code. Each wrong try counts; the 5th "
        "wrong try kills the code.",
    )
    @error(409, "The address is already verified.")
    @error(
        429,
        "The code was killed by 5 wrong tries: every further try, even with the right "
        "code, is refused until a new code is requested (POST /api/resend-otp/).",
    )
    def post(self, data: dict[str, Any]) -> User:
        """Verify the email address with the code from the email."""
        return service.verify_email(data["email"], data["otp"])


@blp.route("/resend-otp/")
class ResendOtp(MethodView):
    @blp.arguments(ResendOtpIn)
    @blp.response(202, MessageOut)
    @error(409, "The address is already verified.")
    @error(
        429,
        "A code was sent less than 60 seconds ago.",
        headers={
            "Retry-After": {
                "description": "Seconds until a new code may be requested.",
                "schema": {"type": "integer"},
            }
        },
    )
    def post(self, data: dict[str, Any]) -> dict[str, str]:
        """Email a new verification code, invalidating the previous ones.

        An address without an account gets the same 202 and no email.
        """
        return {"message": service.resend_verification_code(data["email"])}


@blp.route("/login/")
class Login(MethodView):
    @blp.arguments(LoginIn)
    @blp.response(200, TokenPairOut)
    @error(401, "Wrong email or password; both give the same answer.")
    @error(403, "The email address is not verified yet.")
    def post(self, data: dict[str, Any]) -> service.TokenPair:
        """Exchange email and password for an access and a refresh token."""
        return service.log_in(data["email"], data["password"])


@blp.route("/token/refresh/")
class TokenRefresh(MethodView):
    @jwt_required(refresh=True)
    @blp.doc(security=BEARER)
    @blp.response(200, TokenPairOut)
    @error(401, "Missing, invalid, expired or revoked refresh token.")
    def post(self) -> service.TokenPair:
        """Trade the refresh token (sent as Bearer) for new tokens; it is revoked."""
        return service.rotate_refresh_token(caller(), get_jwt())


@blp.route("/logout/")
class Logout(MethodView):
    @login_required
    @blp.doc(security=BEARER)
    @blp.arguments(LogoutIn, required=False)
    @blp.response(204)
    @error(401, "Missing, invalid, expired or revoked access token.")
    def post(self, data: dict[str, Any]) -> None:
        """Revoke the access token (and the refresh token, if given in the body).

        Revocations are stored in the database, so they survive restarts.
        """
        service.log_out(get_jwt(), data["refresh_token"])


@blp.route("/me/")
class Me(MethodView):
    @login_required
    @blp.doc(security=BEARER)
    @blp.response(200, ProfileOut)
    @error(401, "Missing, invalid, expired or revoked access token.")
    def get(self) -> User:
        """The caller's profile."""
        return caller()

    @login_required
    @blp.doc(security=BEARER)
    @blp.arguments(ProfilePatchIn, required=False)
    @blp.response(200, ProfileOut)
    @error(401, "Missing, invalid, expired or revoked access token.")
    def patch(self, changes: dict[str, Any]) -> User:
        """Change display_name, bio or skills; fields left out stay as they are."""
        return service.update_profile(caller(), changes)


@blp.route("/me/password/")
class MePassword(MethodView):
    @login_required
    @blp.doc(security=BEARER)
    @blp.arguments(PasswordChangeIn)
    @blp.response(204)
    @error(400, "The current password is wrong.")
    @error(401, "Missing, invalid, expired or revoked access token.")
    def post(self, data: dict[str, Any]) -> None:
        """Change the password; the old one stops working at once."""
        service.change_password(caller(), data["old_password"], data["new_password"])

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
    PasswordForgotIn,
    PasswordResetIn,
    ProfileOut,
    ProfilePatchIn,
    RegisteredUserOut,
    RegisterIn,
    ResendOtpIn,
    TokenPairOut,
    VerifyEmailIn,
)
from jobboard.auth.tokens import caller, login_required
from jobboard.conditional import STALE, IfMatch, IfMatchHeaders
from jobboard.models import User
from jobboard.request_rules import client_ip
from jobboard.view_helpers import Blueprint, documented_error

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

RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds until the refused call may succeed.",
        "schema": {"type": "integer"},
    }
}
LIMITS_README = "The limits and their environment variables: docs/configuration.md (README)."
CODES_SENT_LIMITS = (
    "Too many codes requested: from the client IP, for this email address from the "
    "client IP, or for this email address from everybody, within a sliding window (the "
    f"message names the limit). {LIMITS_README}"
)
CODE_CHECK_LIMITS = (
    "Too many failed code checks: from the client IP, for this email address from the "
    "client IP, or for this email address from everybody, within a sliding window; or the "
    "code was killed for the client IP by its wrong tries from there (every further try "
    "from that IP, even with the right code, is refused until a new code is requested; "
    "other IPs, the owner's, are unaffected). The message says which. Security page: "
    f"docs/security.md. {LIMITS_README}"
)


def limited(description: str):
    """Document a 429 answer with its Retry-After header."""
    return error(429, description, headers=RETRY_AFTER)


@blp.route("/register/")
class Register(MethodView):
    @blp.arguments(RegisterIn)
    @blp.response(201, RegisteredUserOut)
    @error(
        409,
        "An account with this email address (in any letter case) already exists, verified "
        "or not. For an account still waiting for verification, the message points to POST "
        "/api/password/forgot/: whoever owns the mailbox sets a new password there, which "
        "verifies the address, and whoever registered it first loses it. Unverified "
        "accounts are deleted a number of days after registration (docs/configuration.md). "
        "This answer tells that the address has an account, so it counts against the client "
        "IP's code requests like a registration that succeeds.",
    )
    @limited(CODES_SENT_LIMITS + " The code requests of one client IP count 409 answers too.")
    def post(self, data: dict[str, Any]) -> User:
        """Create an account and email it a verification code.

        The email is queued and sent by the worker; the request never waits for SMTP.
        With no MAIL_SERVER configured, the worker writes the email, code included, to its
        log. 422 for an invalid address or a weak password (under `errors.json.password`).
        """
        return service.register_user(data["email"], data["password"], client_ip())


@blp.route("/verify-email/")
class VerifyEmail(MethodView):
    @blp.arguments(VerifyEmailIn)
    @blp.response(200, RegisteredUserOut)
    @error(
        400,
        "The code is wrong, or it has expired (the message says which). An unknown or "
        "already verified email address gets the same answer as a wrong code. Each wrong "
        "try counts; the last one allowed from one client IP (OTP_MAX_TRIES, "
        "docs/configuration.md) kills the code for that IP.",
    )
    @error(
        401,
        "The code is right but the password is not the account's. Counted as a failed "
        "login (the login limits apply). A code proves the mailbox, not who chose the "
        "password: a mailbox owner who does not know the password sets one with POST "
        "/api/password/forgot/, which verifies the address and takes it from whoever "
        "registered it.",
    )
    @limited(
        CODE_CHECK_LIMITS
        + " A new code comes from POST /api/resend-otp/. The failed-login limits apply too."
    )
    def post(self, data: dict[str, Any]) -> User:
        """Verify the email address with the code from the email and the account's password.

        The code is checked first, then the password.
        """
        return service.verify_email(data["email"], data["otp"], data["password"], client_ip())


@blp.route("/resend-otp/")
class ResendOtp(MethodView):
    @blp.arguments(ResendOtpIn)
    @blp.response(202, MessageOut)
    @limited(
        "A verification code was requested for this address less than "
        "OTP_RESEND_COOLDOWN_SECONDS ago (by anybody: the newest code in the mailbox "
        "works), or " + CODES_SENT_LIMITS
    )
    def post(self, data: dict[str, Any]) -> dict[str, str]:
        """Email a new verification code, invalidating the previous ones.

        Any well-formed address gets the same 202 after the same limits; only an account
        waiting for verification is emailed (an unknown or already verified address is
        not), so the answer does not tell which addresses have accounts.
        """
        return {"message": service.resend_verification_code(data["email"], client_ip())}


@blp.route("/login/")
class Login(MethodView):
    @blp.arguments(LoginIn)
    @blp.response(200, TokenPairOut)
    @error(401, "Wrong email or password; both give the same answer.")
    @error(403, "The email address is not verified yet.")
    @limited(
        "Too many failed logins: for this email address from the client IP (then the "
        "address is refused from that IP even with the right password, until the window "
        "passes; other IPs are unaffected), or from the client IP for any addresses. "
        "The message names the limit. " + LIMITS_README
    )
    def post(self, data: dict[str, Any]) -> service.TokenPair:
        """Exchange email and password for an access and a refresh token."""
        return service.log_in(data["email"], data["password"], client_ip())


@blp.route("/token/refresh/")
class TokenRefresh(MethodView):
    @jwt_required(refresh=True)
    @blp.doc(security=BEARER)
    @blp.response(200, TokenPairOut)
    @error(
        401,
        "Missing, invalid, expired or revoked refresh token. A refresh token that was "
        "already traded is a stolen copy or the victim's: presenting it again revokes every "
        "token descended from the same login (access and refresh), so both sides log in "
        "again. Other logins of the user are unaffected.",
    )
    def post(self) -> service.TokenPair:
        """Trade the refresh token (sent as Bearer) for new tokens; it is revoked.

        Each refresh token works once (rotation with reuse detection).
        """
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


@blp.route("/logout/all/")
class LogoutAll(MethodView):
    @login_required
    @blp.doc(security=BEARER)
    @blp.response(204)
    @error(401, "Missing, invalid, expired or revoked access token.")
    def post(self) -> None:
        """Revoke every access and refresh token of the caller issued so far.

        Every device is signed out, this one included; logging in again works at once.
        """
        service.log_out_everywhere(caller())


@blp.route("/password/forgot/")
class PasswordForgot(MethodView):
    @blp.arguments(PasswordForgotIn)
    @blp.response(202, MessageOut)
    @limited(
        "A password reset code was requested for this address less than "
        "OTP_RESEND_COOLDOWN_SECONDS ago (its own cooldown, apart from verification "
        "codes), or " + CODES_SENT_LIMITS
    )
    def post(self, data: dict[str, Any]) -> dict[str, str]:
        """Email a 6-digit password reset code to the address, if it has an account.

        Known or not, the address gets the same 202, after the same work, and counts
        against the same limits; only an address with an account (verified or not) is
        emailed. The code follows the rules of verification codes (single use, expires,
        a few tries) and replaces any earlier reset code. It is created when the email
        is sent, so it never arrives already expired.
        """
        return {"message": service.request_password_reset(data["email"], client_ip())}


@blp.route("/password/reset/")
class PasswordReset(MethodView):
    @blp.arguments(PasswordResetIn)
    @blp.response(204)
    @error(
        400,
        "The code is wrong, or it has expired (the message says which). An unknown email "
        "address gets the same answer as a wrong code. The last wrong try allowed from one "
        "client IP (OTP_MAX_TRIES, docs/configuration.md) kills the code for that IP.",
    )
    @limited(CODE_CHECK_LIMITS + " A new code comes from POST /api/password/forgot/.")
    def post(self, data: dict[str, Any]) -> None:
        """Set a new password with the reset code from the email.

        The code proves the mailbox: the address becomes verified, every other live code
        of the account dies, and every access and refresh token issued before is revoked.
        422 for a weak password (under `errors.json.new_password`).
        """
        service.reset_password(data["email"], data["otp"], data["new_password"], client_ip())


@blp.route("/me/")
class Me(MethodView):
    @login_required
    @blp.doc(security=BEARER)
    @blp.etag
    @blp.response(200, ProfileOut)
    @error(401, "Missing, invalid, expired or revoked access token.")
    def get(self) -> User:
        """The caller's profile."""
        return caller()

    @login_required
    @blp.doc(security=BEARER)
    @blp.arguments(ProfilePatchIn, required=False)
    @blp.arguments(IfMatchHeaders, location="headers")
    @blp.response(200, ProfileOut)
    @error(401, "Missing, invalid, expired or revoked access token.")
    @error(412, STALE)
    def patch(self, changes: dict[str, Any], headers: dict[str, Any]) -> User:
        """Change display_name, bio or skills; fields left out stay as they are."""
        if_match = IfMatch.of(headers, ProfileOut)
        return service.update_profile(caller(), changes, if_match=if_match)


@blp.route("/me/password/")
class MePassword(MethodView):
    @login_required
    @blp.doc(security=BEARER)
    @blp.arguments(PasswordChangeIn)
    @blp.response(204)
    @error(400, "The current password is wrong.")
    @error(401, "Missing, invalid, expired or revoked access token.")
    @limited(
        "Too many failed logins for this account from the client IP, or from the client "
        "IP: a wrong current password counts as a failed login. " + LIMITS_README
    )
    def post(self, data: dict[str, Any]) -> None:
        """Change the password; the old one stops working at once.

        Every access and refresh token issued before, this one included, is revoked: the
        client logs in again with the new password.
        """
        service.change_password(caller(), data["old_password"], data["new_password"], client_ip())

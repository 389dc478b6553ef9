"""Request and response bodies of the auth endpoints."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from jobboard.auth.service import normalize_email, password_weakness

MAX_PASSWORD_LENGTH = 256
MAX_SKILLS = 20


class TrimmedString(fields.String):
    """A string with surrounding whitespace removed before validation."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return super()._deserialize(value, attr, data, **kwargs).strip()


class NormalizedEmail(fields.Email):
    """An email address, compared and stored lower-cased."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        return normalize_email(super()._deserialize(value, attr, data, **kwargs))


def email_field() -> NormalizedEmail:
    return NormalizedEmail(
        required=True,
        validate=validate.Length(max=254),
        metadata={"description": "Compared case-insensitively; stored lower-cased."},
    )


def password_field(description: str) -> fields.String:
    return fields.String(
        required=True,
        load_only=True,
        validate=validate.Length(max=MAX_PASSWORD_LENGTH),
        metadata={"description": description},
    )


NEW_PASSWORD_RULES = (
    "At least 8 characters, not digits only, not the email address (in any letter case)."
)


class RegisterIn(Schema):
    email = email_field()
    password = password_field(NEW_PASSWORD_RULES)

    @validates_schema(skip_on_field_errors=False)
    def refuse_weak_password(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if "password" not in data:
            return
        problem = password_weakness(data["password"], data.get("email"))
        if problem is not None:
            raise ValidationError(problem, field_name="password")


class RegisteredUserOut(Schema):
    id = fields.Integer(dump_only=True)
    email = fields.String(dump_only=True)
    is_email_verified = fields.Boolean(dump_only=True)


def otp_field() -> fields.String:
    return fields.String(
        required=True,
        validate=validate.Regexp(r"^[0-9]{6}$", error="The code is 6 digits, as a string."),
        metadata={
            "description": "The 6-digit code from the email, as a string.",
            "example": "042917",
        },
    )


class VerifyEmailIn(Schema):
    email = email_field()
    otp = otp_field()
    password = password_field(
        "The account's password: the code proves the mailbox, the password proves who "
        "registered. A mailbox owner who does not know it sets one with POST "
        "/api/password/forgot/ instead, which verifies the address too."
    )


class ResendOtpIn(Schema):
    email = email_field()


class MessageOut(Schema):
    message = fields.String(dump_only=True)


class LoginIn(Schema):
    email = email_field()
    password = password_field("The account's password.")


class TokenPairOut(Schema):
    access_token = fields.String(dump_only=True)
    refresh_token = fields.String(dump_only=True)
    token_type = fields.String(dump_only=True, metadata={"example": "Bearer"})
    expires_in = fields.Integer(
        dump_only=True, metadata={"description": "Seconds until the access token expires."}
    )


class LogoutIn(Schema):
    refresh_token = fields.String(
        load_default=None,
        metadata={
            "description": (
                "Optional: the caller's refresh token, revoked together with the access token."
            )
        },
    )


class ProfileOut(Schema):
    id = fields.Integer(dump_only=True)
    email = fields.String(dump_only=True)
    is_email_verified = fields.Boolean(dump_only=True)
    is_admin = fields.Boolean(dump_only=True)
    display_name = fields.String(dump_only=True, allow_none=True)
    bio = fields.String(dump_only=True, allow_none=True)
    skills = fields.List(fields.String(), dump_only=True)
    email_verified_at = fields.AwareDateTime(format="iso", dump_only=True, allow_none=True)
    created_at = fields.AwareDateTime(format="iso", dump_only=True)
    updated_at = fields.AwareDateTime(format="iso", dump_only=True)


class ProfilePatchIn(Schema):
    display_name = TrimmedString(
        allow_none=True,
        validate=validate.Length(min=1, max=100),
        metadata={"description": "1 to 100 characters; null clears it."},
    )
    bio = fields.String(
        allow_none=True,
        validate=validate.Length(max=2000),
        metadata={"description": "Up to 2000 characters; null clears it."},
    )
    skills = fields.List(
        TrimmedString(validate=validate.Length(min=1, max=50)),
        validate=validate.Length(max=MAX_SKILLS),
        metadata={
            "description": (
                f"Replaces the list: up to {MAX_SKILLS} skills of 1 to 50 characters; "
                "a repeated skill (in any letter case) is kept once."
            )
        },
    )


class PasswordChangeIn(Schema):
    old_password = password_field("The current password.")
    new_password = password_field(NEW_PASSWORD_RULES)


class PasswordForgotIn(Schema):
    email = email_field()


class PasswordResetIn(Schema):
    email = email_field()
    otp = otp_field()
    new_password = password_field(NEW_PASSWORD_RULES)

    @validates_schema(skip_on_field_errors=False)
    def refuse_weak_password(self, data: dict[str, Any], **_kwargs: Any) -> None:
        if "new_password" not in data:
            return
        problem = password_weakness(data["new_password"], data.get("email"))
        if problem is not None:
            raise ValidationError(problem, field_name="new_password")

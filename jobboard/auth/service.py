"""Accounts: registration, email verification codes, tokens and the caller's profile.

The rules of SPEC §3 live here; views only parse input and render output. Every function
that changes data commits its own transaction. Emails are compared case-insensitively and
stored lower-cased.

Verification codes (OTPs):
- 6 digits from `secrets`, stored as an HMAC-SHA256 keyed with SECRET_KEY, never in
  plaintext: the mail task receives the code sealed with Fernet (key derived from
  SECRET_KEY), so neither `email_otps` nor `procrastinate_jobs` holds a readable code.
- A code expires OTP_TTL (10 min) after issue and works once. At most one live code per
  user and purpose: issuing a new one consumes the old (`consumed_at`), and so do using
  it and OTP_MAX_TRIES (5) wrong tries.
- Checking a code locks the user row, then the code row, so two concurrent tries cannot
  both pass, and a resend cannot race a verification (resend locks the user row first
  too: one lock order, no deadlock).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import logging
import math
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token, decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt import PyJWTError
from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from werkzeug.security import generate_password_hash

from jobboard import queue
from jobboard.auth.passwords import hash_password, password_matches
from jobboard.auth.tokens import revoke_token_once
from jobboard.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
)
from jobboard.extensions import db
from jobboard.models import EmailOtp, OtpPurpose, RevokedToken, User, now_utc
from workers.app import QUEUE_MAIL

logger = logging.getLogger(__name__)

SEND_VERIFICATION_CODE_TASK = "send_verification_code"
OTP_DIGITS = 6
MIN_PASSWORD_LENGTH = 8

EMAIL_TAKEN = "An account with this email address already exists."
WRONG_CODE = "The code is wrong."
EXPIRED_CODE = "The code has expired. Request a new one."
LAST_WRONG_TRY = (
    "The code is wrong, and that was the last try: this code no longer works. Request a new one."
)
DEAD_CODE = "Too many wrong tries: this code no longer works. Request a new one."
ALREADY_VERIFIED = "This email address is already verified."
BAD_CREDENTIALS = "Invalid email or password."
NOT_VERIFIED = "Verify your email address before logging in."
REVOKED = "Token has been revoked"
RESEND_ACCEPTED = (
    "If this address belongs to an account waiting for verification, a new code is on its way."
)


# --- emails and passwords ------------------------------------------------------------------


def normalize_email(email: str) -> str:
    return email.strip().lower()


def find_user_by_email(email: str, *, for_update: bool = False) -> User | None:
    statement = select(User).where(func.lower(User.email) == normalize_email(email))
    if for_update:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    return db.session.scalars(statement).one_or_none()


def password_weakness(password: str, email: str | None = None) -> str | None:
    """Why `password` is too weak, or None when it is acceptable."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"Password must be at least {MIN_PASSWORD_LENGTH} characters long."
    if password.isdigit():
        return "Password must not be made of digits only."
    if email is not None and password.casefold() == email.strip().casefold():
        return "Password must not be the same as the email address."
    return None


@functools.cache
def _decoy_password_hash(method: str) -> str:
    return generate_password_hash(secrets.token_urlsafe(16), method=method)


# --- verification codes --------------------------------------------------------------------


def generate_code() -> str:
    return f"{secrets.randbelow(10**OTP_DIGITS):0{OTP_DIGITS}d}"


def hash_code(user_id: int, purpose: str, code: str) -> str:
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, f"{user_id}:{purpose}:{code}".encode(), hashlib.sha256).hexdigest()


def _code_sealer() -> Fernet:
    # A key of its own (not SECRET_KEY itself), so the sealed codes and the code hashes
    # never share key material.
    secret = current_app.config["SECRET_KEY"].encode()
    key = hashlib.sha256(b"jobboard:otp-mail:" + secret).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal_code(code: str) -> str:
    return _code_sealer().encrypt(code.encode()).decode()


def unseal_code(sealed_code: str) -> str | None:
    """The plaintext code, or None when it was sealed under another SECRET_KEY."""
    try:
        return _code_sealer().decrypt(sealed_code.encode()).decode()
    except InvalidToken:
        return None


def _latest_code(user: User, purpose: str, *, for_update: bool = False) -> EmailOtp | None:
    statement = (
        select(EmailOtp)
        .where(EmailOtp.user_id == user.id, EmailOtp.purpose == purpose)
        .order_by(EmailOtp.created_at.desc(), EmailOtp.id.desc())
        .limit(1)
    )
    if for_update:
        statement = statement.with_for_update().execution_options(populate_existing=True)
    return db.session.scalars(statement).one_or_none()


def _issue_verification_code(user: User, now: datetime) -> EmailOtp:
    """Replace any live code of `user` with a new one and queue its email on the current
    transaction (sent only if the caller commits)."""
    purpose = OtpPurpose.VERIFY_EMAIL.value
    db.session.execute(
        update(EmailOtp)
        .where(
            EmailOtp.user_id == user.id,
            EmailOtp.purpose == purpose,
            EmailOtp.consumed_at.is_(None),
        )
        .values(consumed_at=now)
    )
    code = generate_code()
    otp = EmailOtp(
        user_id=user.id,
        purpose=purpose,
        code_hash=hash_code(user.id, purpose, code),
        created_at=now,
        expires_at=now + current_app.config["OTP_TTL"],
    )
    db.session.add(otp)
    db.session.flush()
    queue.defer(
        SEND_VERIFICATION_CODE_TASK,
        queue=QUEUE_MAIL,
        otp_id=otp.id,
        sealed_code=seal_code(code),
    )
    return otp


@dataclass(frozen=True)
class OutgoingEmail:
    to: str
    subject: str
    body: str


def verification_email(
    otp_id: int, sealed_code: str, now: datetime | None = None
) -> OutgoingEmail | None:
    """The email carrying the code of OTP `otp_id`, or None when that code is no longer
    live (used, replaced, burnt, expired or deleted): re-running the mail task is safe."""
    now = now or now_utc()
    otp = db.session.get(EmailOtp, otp_id)
    if otp is None or otp.consumed_at is not None or otp.expires_at <= now:
        logger.info("verification code %s is no longer live; not sending it", otp_id)
        return None
    code = unseal_code(sealed_code)
    if code is None:
        logger.error("verification code %s was sealed under another SECRET_KEY", otp_id)
        return None
    minutes = int(current_app.config["OTP_TTL"].total_seconds() // 60)
    return OutgoingEmail(
        to=otp.user.email,
        subject=f"Your jobboard verification code: {code}",
        body=(
            f"Your jobboard verification code is {code}\n\n"
            f"It expires in {minutes} minutes and works once. Send it to "
            f"POST /api/verify-email/ with your email address.\n\n"
            "If you did not register on jobboard, ignore this message.\n"
        ),
    )


# --- registration and verification ----------------------------------------------------------


def register_user(email: str, password: str, now: datetime | None = None) -> User:
    now = now or now_utc()
    email = normalize_email(email)
    if find_user_by_email(email) is not None:
        raise Conflict(EMAIL_TAKEN)
    user = User(email=email, password_hash=hash_password(password))
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError:
        # Lost a race against a registration of the same address, in any letter case:
        # the unique index on lower(email) decided.
        db.session.rollback()
        raise Conflict(EMAIL_TAKEN) from None
    _issue_verification_code(user, now)
    db.session.commit()
    return user


def verify_email(email: str, code: str, now: datetime | None = None) -> User:
    """Mark the address verified when `code` is its live, unexpired code.

    An unknown address answers exactly like a wrong code. After OTP_MAX_TRIES wrong tries
    the code is dead: every later try, even with the right code, gets 429 until a new
    code is requested."""
    now = now or now_utc()
    user = find_user_by_email(email, for_update=True)
    if user is None:
        raise BadRequest(WRONG_CODE)
    if user.is_email_verified:
        raise Conflict(ALREADY_VERIFIED)
    otp = _latest_code(user, OtpPurpose.VERIFY_EMAIL.value, for_update=True)
    max_tries = current_app.config["OTP_MAX_TRIES"]
    if otp is None:
        raise BadRequest(WRONG_CODE)
    if otp.consumed_at is not None:
        if otp.failed_attempts >= max_tries:
            raise TooManyRequests(DEAD_CODE)
        raise BadRequest(WRONG_CODE)
    if otp.expires_at <= now:
        raise BadRequest(EXPIRED_CODE)
    if not hmac.compare_digest(otp.code_hash, hash_code(user.id, otp.purpose, code)):
        otp.failed_attempts += 1
        message = WRONG_CODE
        if otp.failed_attempts >= max_tries:
            otp.consumed_at = now
            message = LAST_WRONG_TRY
        db.session.commit()
        raise BadRequest(message)
    mark_email_verified(user, now)
    db.session.commit()
    return user


def mark_email_verified(user: User, now: datetime) -> None:
    """The address is proven (by its code, or by an operator): every live code is spent."""
    user.is_email_verified = True
    user.email_verified_at = user.email_verified_at or now
    db.session.execute(
        update(EmailOtp)
        .where(EmailOtp.user_id == user.id, EmailOtp.consumed_at.is_(None))
        .values(consumed_at=now)
    )


def resend_verification_code(email: str, now: datetime | None = None) -> str:
    """Replace the live code with a new one and email it. Returns the message for the
    caller; an unknown address gets the same answer and no email."""
    now = now or now_utc()
    user = find_user_by_email(email, for_update=True)
    if user is None:
        return RESEND_ACCEPTED
    if user.is_email_verified:
        raise Conflict(ALREADY_VERIFIED)
    last = _latest_code(user, OtpPurpose.VERIFY_EMAIL.value)
    cooldown = current_app.config["OTP_RESEND_COOLDOWN"]
    if last is not None:
        wait = (last.created_at + cooldown - now).total_seconds()
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise TooManyRequests(
                f"A code was sent less than {int(cooldown.total_seconds())} s ago. "
                f"Try again in {seconds} s.",
                headers={"Retry-After": str(seconds)},
            )
    _issue_verification_code(user, now)
    db.session.commit()
    return RESEND_ACCEPTED


# --- tokens --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"


def issue_tokens(user: User) -> TokenPair:
    return TokenPair(
        access_token=create_access_token(identity=user),
        refresh_token=create_refresh_token(identity=user),
        expires_in=int(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds()),
    )


def log_in(email: str, password: str) -> TokenPair:
    """Tokens for a verified user. An unknown address and a wrong password give the same
    401, after the same amount of hashing work, so neither reveals which accounts exist."""
    user = find_user_by_email(email)
    if user is None:
        password_matches(_decoy_password_hash(current_app.config["PASSWORD_HASH_METHOD"]), password)
        raise Unauthorized(BAD_CREDENTIALS)
    if not password_matches(user.password_hash, password):
        raise Unauthorized(BAD_CREDENTIALS)
    if not user.is_email_verified:
        raise Forbidden(NOT_VERIFIED)
    return issue_tokens(user)


def rotate_refresh_token(user: User, refresh_payload: dict[str, Any]) -> TokenPair:
    """New access and refresh tokens; the presented refresh token is revoked for good, and
    of two requests racing with it only one gets new tokens."""
    if not revoke_token_once(refresh_payload):
        raise Unauthorized(REVOKED)
    tokens = issue_tokens(user)
    db.session.commit()
    return tokens


def log_out(access_payload: dict[str, Any], refresh_token: str | None = None) -> None:
    """Revoke the access token, and the caller's refresh token when one is given."""
    revoke_token_once(access_payload)
    if refresh_token is not None:
        refresh_payload = _own_refresh_token(refresh_token, user_id=access_payload["sub"])
        if refresh_payload["exp"] > now_utc().timestamp():
            revoke_token_once(refresh_payload)
    db.session.commit()


def _own_refresh_token(token: str, user_id: str) -> dict[str, Any]:
    try:
        payload = decode_token(token, allow_expired=True)
    except (PyJWTError, JWTExtendedException):
        payload = None
    if payload is None or payload.get("type") != "refresh" or payload.get("sub") != user_id:
        raise Unprocessable(
            "The refresh token is not valid.",
            errors={"json": {"refresh_token": ["Not a refresh token of this user."]}},
        )
    return payload


# --- profile and password ----------------------------------------------------------------------


def update_profile(user: User, changes: dict[str, Any]) -> User:
    for field in ("display_name", "bio"):
        if field in changes:
            setattr(user, field, changes[field])
    if "skills" in changes:
        user.skills = _distinct_skills(changes["skills"])
    db.session.commit()
    return user


def _distinct_skills(skills: list[str]) -> list[str]:
    """Skills in the given order, a repeated one (in any letter case) kept once."""
    seen: set[str] = set()
    distinct = []
    for skill in skills:
        if skill.casefold() not in seen:
            seen.add(skill.casefold())
            distinct.append(skill)
    return distinct


def change_password(user: User, old_password: str, new_password: str) -> None:
    if not password_matches(user.password_hash, old_password):
        raise BadRequest("The current password is wrong.")
    problem = password_weakness(new_password, user.email)
    if problem is not None:
        raise Unprocessable(problem, errors={"json": {"new_password": [problem]}})
    user.password_hash = hash_password(new_password)
    db.session.commit()


# --- housekeeping ----------------------------------------------------------------------------


def purge_expired_otps(now: datetime) -> int:
    """Delete codes that expired or were consumed (used, replaced or burnt); returns how
    many. A user whose burnt code is gone gets 400 instead of 429 on a further try: still
    refused, and nothing is left to guess."""
    deleted = db.session.execute(
        delete(EmailOtp).where(or_(EmailOtp.expires_at <= now, EmailOtp.consumed_at.is_not(None)))
    ).rowcount
    db.session.commit()
    return deleted


def purge_expired_revoked_tokens(now: datetime) -> int:
    """Forget revocations of tokens that have expired anyway; returns how many."""
    deleted = db.session.execute(
        delete(RevokedToken).where(RevokedToken.expires_at <= now)
    ).rowcount
    db.session.commit()
    return deleted

"""Accounts: registration, email verification codes, tokens, the caller's profile, and
what an operator may do to an account.

The account rules live here (docs/security.md, "Accounts and codes", states them); views
only parse input and render output. Every function that changes data commits its own
transaction. Emails are compared case-insensitively and stored lower-cased.

Verification codes (OTPs):
- 6 digits from `secrets`, stored as an HMAC-SHA256 keyed with SECRET_KEY, never in
  plaintext: the mail task receives the code sealed with Fernet (key derived from
  SECRET_KEY), so neither `email_otps` nor `procrastinate_jobs` holds a readable code.
- A code expires OTP_TTL (10 min) after issue and works once. At most one live code per
  user and purpose: issuing a new one consumes the old (`consumed_at`), and so does using
  it. OTP_MAX_TRIES (5) wrong tries kill a code for the client IP that made them, never
  for anyone else: nobody can kill the owner's code (jobboard.ratelimit says how the
  limits keep codes unguessable all the same).
- Checking a code locks the user row, then the code row, so two concurrent tries cannot
  both pass, and a resend cannot race a verification (resend locks the user row first
  too: one lock order, no deadlock).
- Purposes: `verify_email` (registration, resend-otp) and `reset_password` (password
  forgot/reset), each with its own live code and its own cooldown.
- A code proves the mailbox, not who chose the password: verifying an address takes its
  code and the account's password. An address verified without its registrant's proof
  (by the CLI) never keeps the password the registrant chose.

Abuse limits (failed logins, codes sent, failed code checks, the cooldowns) are counted
through jobboard.ratelimit, per client IP and per address; the client IP is passed in by
the view. Answers do not tell known addresses from unknown ones, registration's 409
aside, and every call that could tell is counted per client IP.
Revoking every token of a user (password change or reset, logout everywhere) bumps the
user's token generation (jobboard.auth.tokens).
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from flask import current_app
from flask_jwt_extended import create_access_token, create_refresh_token, decode_token
from flask_jwt_extended.exceptions import JWTExtendedException
from jwt import PyJWTError
from sqlalchemy import delete, exists, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from jobboard import conditional, locking, queue, ratelimit
from jobboard.auth.passwords import hash_password, password_matches
from jobboard.auth.tokens import (
    FAMILY_CLAIM,
    GENERATION_CLAIM,
    new_family,
    refresh_token_reused,
    revoke_all_tokens,
    revoke_family,
    revoke_token_once,
)
from jobboard.errors import (
    BadRequest,
    Conflict,
    DomainError,
    Forbidden,
    NotFound,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
)
from jobboard.extensions import db
from jobboard.mailer import OutgoingEmail
from jobboard.models import Bid, EmailOtp, Job, OtpPurpose, RevokedToken, User, now_utc
from jobboard.ratelimit import (
    CODE_CHECK_FAILURES_PER_ADDRESS,
    CODE_CHECK_FAILURES_PER_ADDRESS_IP,
    CODE_CHECK_FAILURES_PER_IP,
    CODE_TRIES_PER_IP,
    CODES_SENT_PER_ADDRESS,
    CODES_SENT_PER_ADDRESS_IP,
    CODES_SENT_PER_IP,
    LOGIN_FAILURES_PER_EMAIL_IP,
    LOGIN_FAILURES_PER_IP,
    RESET_CODE_COOLDOWN,
    UNKNOWN_IP,
    VERIFICATION_CODE_COOLDOWN,
    Limit,
)
from workers.app import QUEUE_MAIL, SEND_PASSWORD_RESET_CODE_TASK, SEND_VERIFICATION_CODE_TASK

logger = logging.getLogger(__name__)

OTP_DIGITS = 6
MIN_PASSWORD_LENGTH = 8

EMAIL_TAKEN = "An account with this email address already exists."
EMAIL_TAKEN_UNVERIFIED = (
    "An account with this email address already exists and is waiting for verification. "
    "If the address is yours, set a new password with POST /api/password/forgot/: the "
    "code it emails you verifies the address too."
)
WRONG_CODE = "The code is wrong."
EXPIRED_CODE = "The code has expired. Request a new one."
LAST_WRONG_TRY = (
    "The code is wrong, and that was the last try from your IP address: this code no "
    "longer works from there. Request a new one."
)
DEAD_CODE = (
    "Too many wrong tries of this code from your IP address: it no longer works from "
    "there. Request a new one."
)
WRONG_PASSWORD_TO_VERIFY = (
    "The password is not this account's. If the address is yours but you do not know the "
    "password (somebody else may have registered your address), set a new one with POST "
    "/api/password/forgot/: the code it emails verifies the address too."
)
BAD_CREDENTIALS = "Invalid email or password."
NOT_VERIFIED = "Verify your email address before logging in."
REVOKED = "Token has been revoked"
RESEND_ACCEPTED = (
    "If this address belongs to an account waiting for verification, a new code is on its way."
)
RESET_ACCEPTED = "If this address belongs to an account, a password reset code is on its way."


# --- emails and passwords ------------------------------------------------------------------


def normalize_email(email: str) -> str:
    return email.strip().lower()


def find_user_by_email(email: str, *, for_update: bool = False) -> User | None:
    statement = select(User).where(func.lower(User.email) == normalize_email(email))
    if for_update:
        statement = locking.for_update(statement)
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
        statement = locking.for_update(statement)
    return db.session.scalars(statement).one_or_none()


def _new_code(user: User, purpose: str, now: datetime) -> tuple[EmailOtp, str]:
    """Replace any live code of `user` for `purpose` with a new one (on the current
    transaction); returns it with its plaintext, which is never stored."""
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
    return otp, code


def _issue_verification_code(user: User, now: datetime) -> EmailOtp:
    """Replace any live verification code of `user` with a new one and queue its email on
    the current transaction (sent only if the caller commits)."""
    otp, code = _new_code(user, OtpPurpose.VERIFY_EMAIL.value, now)
    queue.defer(
        SEND_VERIFICATION_CODE_TASK,
        queue=QUEUE_MAIL,
        otp_id=otp.id,
        sealed_code=seal_code(code),
        user_id=user.id,
    )
    return otp


def _lifetime(otp: EmailOtp) -> str:
    seconds = round(current_app.config["OTP_TTL"].total_seconds())
    if seconds % 60 == 0:
        return f"{seconds // 60} minutes"
    return f"{seconds} seconds"


def _code_email(otp: EmailOtp, code: str) -> OutgoingEmail:
    lifetime = _lifetime(otp)
    if otp.purpose == OtpPurpose.RESET_PASSWORD:
        return OutgoingEmail(
            to=otp.user.email,
            subject=f"Your jobboard password reset code: {code}",
            body=(
                f"Your jobboard password reset code is {code}\n\n"
                f"It expires in {lifetime} and works once. Send it with your email "
                "address and a new password to POST /api/password/reset/. Resetting the "
                "password also verifies this address and signs out every session.\n\n"
                "If you did not ask for it, ignore this message: your password stays as "
                "it is.\n"
            ),
        )
    return OutgoingEmail(
        to=otp.user.email,
        subject=f"Your jobboard verification code: {code}",
        body=(
            f"Your jobboard verification code is {code}\n\n"
            f"It expires in {lifetime} and works once. Send it to "
            "POST /api/verify-email/ with your email address and your password.\n\n"
            "If you did not register on jobboard, ignore this message. If you did not "
            "choose the account's password (somebody else registered your address), set "
            "one with POST /api/password/forgot/ instead: that verifies the address too.\n"
        ),
    )


def verification_email(
    otp_id: int, sealed_code: str, user_id: int | None = None, now: datetime | None = None
) -> OutgoingEmail | None:
    """The email carrying the code of OTP `otp_id`, or None when that code is no longer
    wanted (used, or replaced by a newer one): re-running the mail task is safe.

    An email never carries a dead code. A code that expired while its email waited (SMTP
    down, retries with backoff) gets a fresh value and a fresh lifetime before sending,
    in place: same row, so it is still the user's one live code. So does a code refreshed
    by an earlier run whose email then failed, since that value reached nobody. A code
    that the periodic purge deleted meanwhile (it expired) is replaced by a new one, as
    long as the account of `user_id` still waits for verification and no newer code was
    issued (that one's own email is on its way)."""
    now = now or now_utc()
    otp = db.session.get(EmailOtp, otp_id)
    user_id = otp.user_id if otp is not None else user_id
    user = locking.locked(User, user_id) if user_id is not None else None
    if user is None or user.is_email_verified:
        logger.info("code %s is no longer wanted; not sending it", otp_id)
        db.session.commit()
        return None
    # The lock order of every code check: the user row, then the code row.
    otp = locking.locked(EmailOtp, otp_id)
    if otp is None:
        return _replace_purged_code(user, otp_id, now)
    if otp.consumed_at is not None:
        logger.info("code %s is no longer live; not sending it", otp_id)
        db.session.commit()
        return None
    code = unseal_code(sealed_code)
    if code is None:
        logger.error("code %s was sealed under another SECRET_KEY", otp_id)
        db.session.commit()
        return None
    current = hmac.compare_digest(otp.code_hash, hash_code(otp.user_id, otp.purpose, code))
    if otp.expires_at <= now or not current:
        code = generate_code()
        otp.code_hash = hash_code(otp.user_id, otp.purpose, code)
        otp.expires_at = now + current_app.config["OTP_TTL"]
        otp.failed_attempts = 0
        logger.info("code %s expired before its email went out; sending a fresh one", otp_id)
    email = _code_email(otp, code)
    db.session.commit()
    return email


def _replace_purged_code(user: User, otp_id: int, now: datetime) -> OutgoingEmail | None:
    """The email of a new code for `user`, whose code `otp_id` (never sent) is gone; None
    when a newer code exists: its own email carries it. The caller holds the user's row
    lock, so two such emails cannot both issue one."""
    newer = db.session.scalar(
        select(EmailOtp.id).where(
            EmailOtp.user_id == user.id,
            EmailOtp.purpose == OtpPurpose.VERIFY_EMAIL.value,
            EmailOtp.id > otp_id,
        )
    )
    if newer is not None:
        logger.info("code %s was replaced by code %s; not sending it", otp_id, newer)
        db.session.commit()
        return None
    otp, code = _new_code(user, OtpPurpose.VERIFY_EMAIL.value, now)
    logger.info("code %s was purged before its email went out; sending code %s", otp_id, otp.id)
    email = _code_email(otp, code)
    db.session.commit()
    return email


def password_reset_email(email: str, now: datetime | None = None) -> OutgoingEmail | None:
    """Issue a password reset code for the account of `email` and return its email, or
    None when no account has that address. Runs in the worker, at sending time: the
    request (`request_password_reset`) does the same work for every address, and the
    code cannot expire while waiting for SMTP (a retry issues a new one)."""
    now = now or now_utc()
    user = find_user_by_email(email, for_update=True)
    if user is None:
        db.session.commit()
        return None
    otp, code = _new_code(user, OtpPurpose.RESET_PASSWORD.value, now)
    outgoing = _code_email(otp, code)
    db.session.commit()
    return outgoing


# --- registration and verification ----------------------------------------------------------


def _email_taken(existing: User | None) -> Conflict:
    if existing is not None and not existing.is_email_verified:
        return Conflict(EMAIL_TAKEN_UNVERIFIED)
    return Conflict(EMAIL_TAKEN)


def _code_request_limits(cooldown: Limit, email: str, client_ip: str) -> list[tuple[Limit, str]]:
    """What one request for a code counts, known address or not: its purpose's cooldown,
    the address's codes from this client and from everybody, the client's codes."""
    return [
        (cooldown, email),
        (CODES_SENT_PER_ADDRESS_IP, f"{email}|{client_ip}"),
        (CODES_SENT_PER_ADDRESS, email),
        (CODES_SENT_PER_IP, client_ip),
    ]


def _code_check_limits(email: str, client_ip: str) -> list[tuple[Limit, str]]:
    return [
        (CODE_CHECK_FAILURES_PER_IP, client_ip),
        (CODE_CHECK_FAILURES_PER_ADDRESS_IP, f"{email}|{client_ip}"),
        (CODE_CHECK_FAILURES_PER_ADDRESS, email),
    ]


CODE_CHECK_LIMITS = (
    CODE_CHECK_FAILURES_PER_IP,
    CODE_CHECK_FAILURES_PER_ADDRESS_IP,
    CODE_CHECK_FAILURES_PER_ADDRESS,
)
LOGIN_FAILURE_LIMITS = (LOGIN_FAILURES_PER_EMAIL_IP, LOGIN_FAILURES_PER_IP)
COOLDOWNS = {
    OtpPurpose.VERIFY_EMAIL: VERIFICATION_CODE_COOLDOWN,
    OtpPurpose.RESET_PASSWORD: RESET_CODE_COOLDOWN,
}


def register_user(
    email: str, password: str, client_ip: str = UNKNOWN_IP, now: datetime | None = None
) -> User:
    """Create an unverified account and queue its verification code. Every registration
    counts against the client IP's code requests, a 409 included: that answer says the
    address has an account."""
    now = now or now_utc()
    email = normalize_email(email)
    ratelimit.take(CODES_SENT_PER_IP, client_ip, now)
    existing = find_user_by_email(email)
    if existing is not None:
        db.session.commit()  # the counted request
        raise _email_taken(existing)
    codes_sent = _code_request_limits(VERIFICATION_CODE_COOLDOWN, email, client_ip)
    ratelimit.take_all(codes_sent[:-1], now)
    user = User(email=email, password_hash=hash_password(password))
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError:
        # Lost a race against a registration of the same address, in any letter case:
        # the unique index on lower(email) decided.
        db.session.rollback()
        ratelimit.take(CODES_SENT_PER_IP, client_ip, now)
        db.session.commit()
        raise _email_taken(find_user_by_email(email)) from None
    _issue_verification_code(user, now)
    db.session.commit()
    return user


def _check_code(
    user: User | None,
    purpose: OtpPurpose,
    code: str,
    client_ip: str,
    now: datetime,
) -> EmailOtp:
    """The live, unexpired code of `user` for `purpose` when `code` is it; otherwise
    raise. The caller holds the user row lock, and commits after a refusal: a wrong try
    is recorded on the session. OTP_MAX_TRIES wrong tries from one client IP kill the
    code for that IP: every later try from there, even with the right code, gets 429."""
    otp = _latest_code(user, purpose.value, for_update=True) if user is not None else None
    if otp is None or otp.consumed_at is not None:
        raise BadRequest(WRONG_CODE)
    tries = f"{otp.id}|{client_ip}"
    if ratelimit.wait(CODE_TRIES_PER_IP, tries, now) is not None:
        # Retrying is pointless until a new code can be requested.
        seconds = ratelimit.wait(COOLDOWNS[purpose], user.email, now) or 1
        raise TooManyRequests(DEAD_CODE, headers={"Retry-After": str(seconds)})
    if otp.expires_at <= now:
        raise BadRequest(EXPIRED_CODE)
    if not hmac.compare_digest(otp.code_hash, hash_code(otp.user_id, otp.purpose, code)):
        otp.failed_attempts += 1
        ratelimit.take(CODE_TRIES_PER_IP, tries, now)
        last = ratelimit.wait(CODE_TRIES_PER_IP, tries, now) is not None
        raise BadRequest(LAST_WRONG_TRY if last else WRONG_CODE)
    return otp


def verify_email(
    email: str,
    code: str,
    password: str,
    client_ip: str = UNKNOWN_IP,
    now: datetime | None = None,
) -> User:
    """Mark the address verified when `code` is its live, unexpired code and `password`
    the account's: the code proves the mailbox, the password the registrant.

    The code is checked first. A refused code (wrong, expired, dead; an unknown or
    already verified address answers as a wrong code) counts as a failed code check; a
    right code with a wrong password as a failed login (401, pointing a mailbox owner
    who does not know the password to the password reset). The slots of both are taken
    before the checks and the ones that passed are given back."""
    now = now or now_utc()
    email = normalize_email(email)
    reservation = ratelimit.reserve(
        [*_code_check_limits(email, client_ip), *_login_failure_limits(email, client_ip)], now
    )
    user = find_user_by_email(email, for_update=True)
    if user is not None and user.is_email_verified:
        user = None  # its codes are spent: answer as for an unknown address
    try:
        _check_code(user, OtpPurpose.VERIFY_EMAIL, code, client_ip, now)
    except DomainError:
        reservation.release(*LOGIN_FAILURE_LIMITS)
        db.session.commit()
        raise
    assert user is not None
    reservation.release(*CODE_CHECK_LIMITS)
    if not password_matches(user.password_hash, password):
        db.session.commit()
        raise Unauthorized(WRONG_PASSWORD_TO_VERIFY)
    reservation.release()
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


def resend_verification_code(
    email: str, client_ip: str = UNKNOWN_IP, now: datetime | None = None
) -> str:
    """Replace the live verification code of an account waiting for verification with a
    new one and email it. Any address gets the same answer after the same limits (an
    unknown or already verified one is emailed nothing)."""
    now = now or now_utc()
    email = normalize_email(email)
    ratelimit.take_all(_code_request_limits(VERIFICATION_CODE_COOLDOWN, email, client_ip), now)
    user = find_user_by_email(email, for_update=True)
    if user is not None and not user.is_email_verified:
        _issue_verification_code(user, now)
    db.session.commit()
    return RESEND_ACCEPTED


# --- what an operator does (flask users ...) ------------------------------------------------


class AccountState(enum.StrEnum):
    NONE = "none"
    UNVERIFIED = "unverified"
    VERIFIED = "verified"


class OperatorChange(enum.StrEnum):
    CREATED = "created"
    PROMOTED = "promoted"
    ALREADY_ADMIN = "already admin"
    # An unverified account: its registrant's password replaced, its tokens revoked.
    PASSWORD_REPLACED = "password replaced"
    PASSWORD_CLEARED = "password cleared"
    ALREADY_VERIFIED = "already verified"


class PasswordNeeded(Conflict):
    """The operator must give a password (the account changed since they were asked)."""


def account_state(email: str) -> AccountState:
    """Whether `email` has an account, and whether it is verified (nothing is locked)."""
    user = find_user_by_email(email)
    db.session.rollback()  # no transaction stays open while a human types
    if user is None:
        return AccountState.NONE
    return AccountState.VERIFIED if user.is_email_verified else AccountState.UNVERIFIED


def make_admin(
    email: str, password: str | None = None, now: datetime | None = None
) -> tuple[User, OperatorChange]:
    """Make `email` a verified admin. A new account gets `password`. An existing verified
    one keeps its own (its owner chose it) and becomes admin. An unverified one was
    registered by somebody nobody checked: it never keeps that password, it gets
    `password`, its tokens are revoked, and it is verified by the operator's word.
    PasswordNeeded when `password` is None and one is needed."""
    now = now or now_utc()
    email = normalize_email(email)
    user = find_user_by_email(email, for_update=True)
    if user is not None and user.is_email_verified:
        change = OperatorChange.ALREADY_ADMIN if user.is_admin else OperatorChange.PROMOTED
        user.is_admin = True
        db.session.commit()
        return user, change
    if password is None:
        db.session.rollback()
        raise PasswordNeeded(f"{email} needs a new password; run the command again.")
    if user is None:
        user = User(email=email, is_admin=True, display_name=email.split("@", 1)[0])
        db.session.add(user)
        change = OperatorChange.CREATED
    else:
        revoke_all_tokens(user)
        change = OperatorChange.PASSWORD_REPLACED
    user.password_hash = hash_password(password)
    user.is_admin = True
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise PasswordNeeded(f"{email} was registered meanwhile; run the command again.") from None
    mark_email_verified(user, now)
    db.session.commit()
    return user, change


def verify_by_operator(
    email: str, password: str | None = None, now: datetime | None = None
) -> tuple[User, OperatorChange]:
    """Mark `email` verified without a code (an operator vouches for the mailbox). The
    password was chosen by whoever registered the address, whom nobody checked: it is
    cleared, or replaced by `password` when the operator gives one, and every token is
    revoked. The owner sets a password through the password reset."""
    now = now or now_utc()
    user = find_user_by_email(email, for_update=True)
    if user is None:
        db.session.rollback()
        raise NotFound(f"No user with email {normalize_email(email)}.")
    if user.is_email_verified:
        db.session.rollback()
        return user, OperatorChange.ALREADY_VERIFIED
    user.password_hash = hash_password(password) if password is not None else None
    revoke_all_tokens(user)
    mark_email_verified(user, now)
    db.session.commit()
    change = (
        OperatorChange.PASSWORD_REPLACED
        if password is not None
        else OperatorChange.PASSWORD_CLEARED
    )
    return user, change


# --- password reset ----------------------------------------------------------------------------


def request_password_reset(
    email: str, client_ip: str = UNKNOWN_IP, now: datetime | None = None
) -> str:
    """Queue a password reset code for `email`. The request does the same work whatever
    the address (limits, one queued task), so neither the answer nor its timing tells
    whether an account exists; the worker issues and emails the code only when one does
    (`password_reset_email`)."""
    now = now or now_utc()
    email = normalize_email(email)
    ratelimit.take_all(_code_request_limits(RESET_CODE_COOLDOWN, email, client_ip), now)
    queue.defer(SEND_PASSWORD_RESET_CODE_TASK, queue=QUEUE_MAIL, email=email)
    db.session.commit()
    return RESET_ACCEPTED


def reset_password(
    email: str,
    code: str,
    new_password: str,
    client_ip: str = UNKNOWN_IP,
    now: datetime | None = None,
) -> None:
    """Set a new password with a reset code. The code proves the mailbox, so the address
    becomes verified; every other live code dies and every token issued before is
    revoked. Whoever registered the address first, perhaps not its owner, loses it."""
    now = now or now_utc()
    email = normalize_email(email)
    reservation = ratelimit.reserve(_code_check_limits(email, client_ip), now)
    user = find_user_by_email(email, for_update=True)
    try:
        _check_code(user, OtpPurpose.RESET_PASSWORD, code, client_ip, now)
    except DomainError:
        db.session.commit()
        raise
    assert user is not None
    reservation.release()
    user.password_hash = hash_password(new_password)
    mark_email_verified(user, now)
    revoke_all_tokens(user)
    db.session.commit()


# --- tokens --------------------------------------------------------------------------------


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "Bearer"


def issue_tokens(user: User, generation: int | None = None, family: str | None = None) -> TokenPair:
    """Tokens of `user`, valid while the user's token generation is `generation` (by
    default the one loaded with the user, i.e. with the password that was checked), in
    the refresh-token family `family` (by default a new one: a login)."""
    claims = {
        GENERATION_CLAIM: user.token_generation if generation is None else generation,
        FAMILY_CLAIM: family or new_family(),
    }
    return TokenPair(
        access_token=create_access_token(identity=user, additional_claims=claims),
        refresh_token=create_refresh_token(identity=user, additional_claims=claims),
        expires_in=int(current_app.config["JWT_ACCESS_TOKEN_EXPIRES"].total_seconds()),
    )


def _login_failure_limits(email: str, client_ip: str) -> list[tuple[Limit, str]]:
    return [
        (LOGIN_FAILURES_PER_EMAIL_IP, f"{normalize_email(email)}|{client_ip}"),
        (LOGIN_FAILURES_PER_IP, client_ip),
    ]


def log_in(
    email: str, password: str, client_ip: str = UNKNOWN_IP, now: datetime | None = None
) -> TokenPair:
    """Tokens for a verified user (see `authenticate`)."""
    return issue_tokens(authenticate(email, password, client_ip, now))


def authenticate(
    email: str, password: str, client_ip: str = UNKNOWN_IP, now: datetime | None = None
) -> User:
    """The verified user with this email and password. An unknown address and a wrong
    password give the same 401, after the same amount of hashing work, so neither reveals
    which accounts exist.

    Failed logins are limited per (address, client IP) and per client IP. The slot is
    taken before the password is checked and given back when it was right, so concurrent
    guesses cannot overshoot the limit; once it is full, the address is refused from that
    IP even with the right password, until the window passes."""
    now = now or now_utc()
    email = normalize_email(email)
    reservation = ratelimit.reserve(_login_failure_limits(email, client_ip), now)
    user = find_user_by_email(email)
    if user is None:
        password_matches(None, password)  # the same hashing work as for a known address
        raise Unauthorized(BAD_CREDENTIALS)
    if not password_matches(user.password_hash, password):
        raise Unauthorized(BAD_CREDENTIALS)
    reservation.release()
    db.session.commit()
    if not user.is_email_verified:
        raise Forbidden(NOT_VERIFIED)
    return user


def rotate_refresh_token(user: User, refresh_payload: dict[str, Any]) -> TokenPair:
    """New access and refresh tokens in the presented token's family; the presented
    refresh token is revoked for good. Of two requests racing with it only one gets new
    tokens, and the other is a reuse: it revokes the family, the winner's new tokens
    included (jobboard.auth.tokens). The new tokens keep the presented token's
    generation: a revocation of all tokens racing with this refresh revokes them too."""
    if not revoke_token_once(refresh_payload):
        db.session.rollback()
        refresh_token_reused(refresh_payload)
        raise Unauthorized(REVOKED)
    tokens = issue_tokens(
        user,
        generation=refresh_payload.get(GENERATION_CLAIM, 0),
        family=refresh_payload.get(FAMILY_CLAIM),
    )
    db.session.commit()
    return tokens


def log_out_everywhere(user: User) -> None:
    """Revoke every access and refresh token issued to `user` so far."""
    revoke_all_tokens(user)
    db.session.commit()


def end_session(access_payload: dict[str, Any]) -> None:
    """Sign a browser session out: its access token, and every token of its login (the
    refresh token and whatever access tokens its refreshes issued), are revoked."""
    revoke_token_once(access_payload)
    revoke_family(access_payload)
    db.session.commit()


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


def update_profile(
    user: User, changes: dict[str, Any], if_match: conditional.IfMatch | None = None
) -> User:
    """Change the caller's display_name, bio or skills; 412 when the profile changed since
    they read it (`if_match`, checked under the row's lock)."""
    user = locking.locked(User, user.id) or user
    conditional.require_current(if_match, user)
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


def change_password(
    user: User, old_password: str, new_password: str, client_ip: str = UNKNOWN_IP
) -> None:
    """Set a new password and revoke every token issued before. A wrong current password
    counts as a failed login (the same limits): a stolen access token is no way around
    them to guess the password."""
    problem = password_weakness(new_password, user.email)
    if problem is not None:
        raise Unprocessable(problem, errors={"json": {"new_password": [problem]}})
    reservation = ratelimit.reserve(_login_failure_limits(user.email, client_ip))
    if not password_matches(user.password_hash, old_password):
        raise BadRequest("The current password is wrong.")
    reservation.release()
    user.password_hash = hash_password(new_password)
    revoke_all_tokens(user)
    db.session.commit()


# --- housekeeping ----------------------------------------------------------------------------


def purge_expired_otps(now: datetime) -> int:
    """Delete codes that expired or were consumed (used or replaced); returns how many.
    A verification code deleted before its email went out is replaced when the email is
    sent (`verification_email`)."""
    deleted = db.session.execute(
        delete(EmailOtp).where(or_(EmailOtp.expires_at <= now, EmailOtp.consumed_at.is_not(None)))
    ).rowcount
    db.session.commit()
    return deleted


def delete_unverified_accounts(now: datetime) -> int:
    """Delete accounts still unverified UNVERIFIED_ACCOUNT_DAYS after registration, with
    their codes and revocations (ON DELETE CASCADE); returns how many. An unverified user
    cannot post jobs or bid; an account that somehow has jobs or bids is kept."""
    cutoff = now - timedelta(days=current_app.config["UNVERIFIED_ACCOUNT_DAYS"])
    deleted = db.session.execute(
        delete(User).where(
            User.is_email_verified.is_(False),
            User.created_at <= cutoff,
            ~exists().where(Job.owner_id == User.id),
            ~exists().where(Job.assignee_id == User.id),
            ~exists().where(Bid.bidder_id == User.id),
        )
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

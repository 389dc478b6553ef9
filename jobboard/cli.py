"""Operator commands: `flask users ...`, `flask otp ...`, `flask jobs ...`, `flask demo ...`,
`flask plans ...`.

Data and what a command did go to stdout (a table, or JSON with `--json`), progress and
notes to stderr, refusals are click errors with a non-zero exit status: see
jobboard/cli_output.py.
"""

from __future__ import annotations

import sys

import click
from flask import Flask, current_app
from flask.cli import AppGroup
from marshmallow import ValidationError
from marshmallow.validate import Email
from sqlalchemy import select

from jobboard import demo
from jobboard.auth.service import (
    AccountState,
    OperatorChange,
    PasswordNeeded,
    account_state,
    make_admin,
    normalize_email,
    password_weakness,
    purge_expired_otps,
    verify_by_operator,
)
from jobboard.cli_output import emit, emit_json, emit_table, json_option, note
from jobboard.errors import NotFound
from jobboard.extensions import db
from jobboard.models import User, now_utc

users_cli = AppGroup("users", help="Manage user accounts.")
otp_cli = AppGroup("otp", help="Housekeeping of one-time codes.")
demo_cli = AppGroup("demo", help="Fill the database with realistic demo data.")


def register_cli(app: Flask) -> None:
    from jobboard.jobs.cli import jobs_cli
    from jobboard.plans.cli import plans_cli

    for group in (users_cli, otp_cli, jobs_cli, demo_cli, plans_cli):
        app.cli.add_command(group)


# --- users -------------------------------------------------------------------------------


def _normalized_email(email: str) -> str:
    normalized = normalize_email(email)
    try:
        Email()(normalized)
    except ValidationError:
        raise click.BadParameter(f"{email!r} is not an email address.") from None
    return normalized


def _new_password(email: str, from_stdin: bool) -> str:
    """The password the operator gives: asked twice, hidden, or the first line of
    standard input with --password-stdin (for scripts)."""
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(
            f"New password for {email}", hide_input=True, confirmation_prompt=True, err=True
        )
    problem = password_weakness(password, email)
    if problem:
        raise click.ClickException(problem)
    return password


PASSWORD_STDIN_HELP = (
    "Read the new password from the first line of standard input instead of asking "
    "(for scripts; keeps it out of the process list and the shell history)."
)

ADMIN_DONE = {
    OperatorChange.CREATED: (
        "Created {email} (user {id}): a verified admin. It signs in with the password you "
        "just entered."
    ),
    OperatorChange.PROMOTED: (
        "{email} (user {id}) is now an admin. Its owner signs in with their own password, "
        "as before."
    ),
    OperatorChange.ALREADY_ADMIN: "{email} (user {id}) is already an admin; nothing changed.",
    OperatorChange.PASSWORD_REPLACED: (
        "{email} (user {id}) was registered but never verified, so its password was chosen "
        "by whoever registered the address, unchecked. That password was replaced by the "
        "one you entered, every token of the account is revoked, and it is now a verified "
        "admin. Give the new password to the address's owner in person or by another "
        "channel; they sign in with it and change it with POST /api/me/password/."
    ),
}


@users_cli.command("create-admin")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help=PASSWORD_STDIN_HELP)
def create_admin(email: str, password_stdin: bool) -> None:
    """Make EMAIL a verified admin: create it, or promote its account.

    A new account, or one that was never verified, gets a new password (asked for): an
    unverified account's password was chosen by whoever registered the address, and is
    never kept (its tokens are revoked too). A verified account keeps its owner's
    password. Admins see the queue's health on the dashboard and can read every job; the
    API never grants the role.
    """
    email = _normalized_email(email)
    password = None
    if account_state(email) != AccountState.VERIFIED:
        password = _new_password(email, password_stdin)
    try:
        user, change = make_admin(email, password)
    except PasswordNeeded as error:
        raise click.ClickException(error.message) from None
    emit(ADMIN_DONE[change].format(email=user.email, id=user.id))
    if password_stdin and password is None:
        note("The password on standard input was not used: a verified account keeps its own.")


USER_COLUMNS = ("id", "email", "verified", "admin", "name", "created")


@users_cli.command("list")
@click.option("--admins", "admins_only", is_flag=True, help="Only admins.")
@click.option("--unverified", "unverified_only", is_flag=True, help="Only unverified users.")
@json_option
def list_users(admins_only: bool, unverified_only: bool, as_json: bool) -> None:
    """Users, oldest first."""
    query = select(User).order_by(User.id)
    if admins_only:
        query = query.where(User.is_admin)
    if unverified_only:
        query = query.where(User.is_email_verified.is_(False))
    users = [
        {
            "id": user.id,
            "email": user.email,
            "verified": user.is_email_verified,
            "admin": user.is_admin,
            "name": user.display_name,
            "created": user.created_at,
        }
        for user in db.session.scalars(query)
    ]
    if as_json:
        emit_json(users)
    else:
        emit_table(USER_COLUMNS, [[user[column] for column in USER_COLUMNS] for user in users])
    note(f"{len(users)} user(s)")


VERIFY_DONE = {
    OperatorChange.PASSWORD_CLEARED: (
        "Verified {email} (user {id}) without a code. Its password was chosen by whoever "
        "registered the address, unchecked, so it was cleared: nobody can sign in to the "
        "account until its owner sets a password with POST /api/password/forgot/ (a code "
        "is emailed to the address) and POST /api/password/reset/. Every token of the "
        "account is revoked."
    ),
    OperatorChange.PASSWORD_REPLACED: (
        "Verified {email} (user {id}) without a code. Its registrant's password was "
        "replaced by the one you gave, and every token of the account is revoked. Give the "
        "password to the address's owner; they sign in with it and change it with POST "
        "/api/me/password/ (or set their own with POST /api/password/forgot/)."
    ),
    OperatorChange.ALREADY_VERIFIED: "{email} (user {id}) is already verified; nothing changed.",
}


@users_cli.command("verify")
@click.argument("email")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Set the password read from the first line of standard input instead of clearing "
    "it (for scripts that then sign in).",
)
def verify_user(email: str, password_stdin: bool) -> None:
    """Mark EMAIL as verified without a code (e.g. when the email never arrived).

    The account's password was chosen by whoever registered the address, and nobody
    checked them: it is cleared (or replaced, with --password-stdin) and the account's
    tokens are revoked. The owner sets a password through the password reset.
    """
    email = _normalized_email(email)
    state = account_state(email)
    if state == AccountState.NONE:
        raise click.ClickException(f"No user with email {email}.")
    password = None
    if password_stdin and state == AccountState.UNVERIFIED:
        password = _new_password(email, from_stdin=True)
    try:
        user, change = verify_by_operator(email, password)
    except NotFound as error:
        raise click.ClickException(error.message) from None
    emit(VERIFY_DONE[change].format(email=user.email, id=user.id))


# --- one-time codes ------------------------------------------------------------------------


@otp_cli.command("cleanup")
@json_option
def cleanup_otps(as_json: bool) -> None:
    """Delete expired and used one-time codes now (a periodic task also does it)."""
    deleted = purge_expired_otps(now_utc())
    db.session.commit()
    if as_json:
        emit_json({"deleted": deleted})
    else:
        emit(f"deleted {deleted} expired or used one-time code(s)")


# --- demo data -----------------------------------------------------------------------------


@demo_cli.command("seed")
@click.option(
    "--users", "user_count", type=click.IntRange(2, 100_000), default=20, show_default=True
)
@click.option(
    "--jobs", "job_count", type=click.IntRange(0, 10_000_000), default=500, show_default=True
)
@click.option(
    "--password",
    default=demo.DEMO_PASSWORD,
    show_default=True,
    help="Password of demo users created by this run (existing ones keep theirs).",
)
@click.option("--seed", "random_seed", type=int, help="Random seed, for repeatable data.")
@click.option("--yes", "confirmed", is_flag=True, help="Do not ask before seeding production.")
@json_option
def seed_demo(
    user_count: int,
    job_count: int,
    password: str,
    random_seed: int | None,
    confirmed: bool,
    as_json: bool,
) -> None:
    """Create demo users demo-1..N@example.com and top their jobs up to M in total.

    Jobs cover every kind and status with plausible names, params, timestamps and results,
    and get bids in every status. Pending jobs are queued for real (the worker runs them at
    their scheduled time); in-progress ones are queued as interrupted attempts, so the
    worker finishes them. Running it again reuses the users and adds only missing jobs.
    """
    problem = password_weakness(password)
    if problem:
        raise click.BadParameter(problem, param_hint="--password")
    if current_app.config["APP_ENV"] == "production" and not confirmed:
        click.confirm(
            "APP_ENV is production: add demo users with a known password and fake jobs?",
            abort=True,
            err=True,
        )
    result = demo.seed(
        user_count,
        job_count,
        password,
        random_seed,
        progress=lambda total: click.progressbar(
            length=total, label="Seeding demo jobs", file=sys.stderr
        ),
        note=note,
    )
    if as_json:
        emit_json(result.as_dict())
    else:
        emit(result.summary())
    note(
        f"sign in at /dashboard/ as {demo.DEMO_EMAIL_PATTERN.format(1)} "
        f"(password {password!r} unless it existed before)"
    )

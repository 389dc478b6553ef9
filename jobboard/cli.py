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
from sqlalchemy.exc import IntegrityError

from jobboard import demo
from jobboard.auth.passwords import hash_password
from jobboard.auth.service import (
    find_user_by_email,
    mark_email_verified,
    normalize_email,
    password_weakness,
    purge_expired_otps,
)
from jobboard.cli_output import emit, emit_json, emit_table, json_option, note
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


@users_cli.command("create-admin")
@click.argument("email")
def create_admin(email: str) -> None:
    """Create a verified admin EMAIL (asks for its password), or promote an existing user.

    An existing user keeps their password and becomes verified and admin. Admins see the
    queue's health on the dashboard and can read every job; the API never grants the role.
    """
    email = _normalized_email(email)
    user = find_user_by_email(email, for_update=True)
    if user is not None:
        mark_email_verified(user, now_utc())
        already = user.is_admin
        user.is_admin = True
        db.session.commit()
        if already:
            emit(f"{user.email} (user {user.id}) is already an admin")
        else:
            emit(f"promoted {user.email} (user {user.id}) to admin")
        return

    db.session.rollback()  # no transaction stays open while a human types
    password = click.prompt("Password", hide_input=True, confirmation_prompt=True, err=True)
    problem = password_weakness(password, email)
    if problem:
        raise click.ClickException(problem)
    user = User(
        email=email,
        password_hash=hash_password(password),
        is_admin=True,
        display_name=email.split("@", 1)[0],
    )
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise click.ClickException(
            f"{email} registered meanwhile; run the command again to promote it."
        ) from None
    mark_email_verified(user, now_utc())
    db.session.commit()
    emit(f"created admin {user.email} (user {user.id})")


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


@users_cli.command("verify")
@click.argument("email")
def verify_user(email: str) -> None:
    """Mark EMAIL as verified without a code (e.g. when the email never arrived)."""
    user = find_user_by_email(_normalized_email(email), for_update=True)
    if user is None:
        raise click.ClickException(f"No user with email {email}.")
    if user.is_email_verified:
        emit(f"{user.email} (user {user.id}) is already verified")
        db.session.rollback()
        return
    mark_email_verified(user, now_utc())
    db.session.commit()
    emit(f"verified {user.email} (user {user.id})")


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

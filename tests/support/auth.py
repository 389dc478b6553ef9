"""Helpers for the accounts tests: run queued mail tasks in the test process, read codes
from the real SMTP server, and walk a user through register -> verify -> login."""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from typing import Any

from flask.testing import FlaskClient
from flask_jwt_extended import create_access_token
from sqlalchemy import func, select, text

from devtools.smtp import Mailbox
from jobboard.extensions import db
from jobboard.models import EmailOtp, User
from tests.support.smtp import body_of
from workers.app import QUEUE_MAIL, task_app

DEFAULT_PASSWORD = "correct horse battery"
CODE_PATTERN = re.compile(r"\b(\d{6})\b")


def bearer(user: User | int) -> dict[str, str]:
    """Authorization header with a fresh access token (needs an app context)."""
    user_id = user if isinstance(user, int) else user.id
    return {"Authorization": f"Bearer {create_access_token(identity=str(user_id))}"}


@dataclass(frozen=True)
class QueuedJob:
    id: int
    task_name: str
    args: dict[str, Any]
    status: str
    attempts: int


def queued_mail_jobs(task_name: str | None = None) -> list[QueuedJob]:
    """Mail jobs in the queue as the current session sees them (in the `app` fixture:
    inside the test's own transaction), oldest first."""
    rows = db.session.execute(
        text(
            "SELECT id, task_name, args, status, attempts FROM procrastinate_jobs "
            "WHERE queue_name = :queue AND (CAST(:task AS text) IS NULL OR task_name = :task) "
            "ORDER BY id"
        ),
        {"queue": QUEUE_MAIL, "task": task_name},
    )
    return [QueuedJob(*row) for row in rows]


def run_job(job: QueuedJob) -> Any:
    """Run the real task function of `job` here, in the caller's app context (what the
    worker would do, minus the worker)."""
    task_app.perform_import_paths()
    return task_app.tasks[job.task_name](**job.args)


def verification_job_for(email: str) -> QueuedJob:
    """The newest queued verification-code job addressed to `email`."""
    row = db.session.execute(
        text(
            "SELECT j.id FROM procrastinate_jobs j "
            "JOIN email_otps o ON o.id = CAST(j.args ->> 'otp_id' AS integer) "
            "JOIN users u ON u.id = o.user_id "
            "WHERE j.task_name = 'send_verification_code' AND lower(u.email) = lower(:email) "
            "ORDER BY j.id DESC LIMIT 1"
        ),
        {"email": email},
    ).first()
    assert row is not None, f"no verification email queued for {email}"
    return next(job for job in queued_mail_jobs() if job.id == row[0])


def code_in(message: Message) -> str:
    match = CODE_PATTERN.search(body_of(message))
    assert match is not None, "no 6-digit code in the email"
    return match.group(1)


def deliver_code(mailbox: Mailbox, email: str) -> str:
    """Run the newest verification-code job for `email`, read the email it sent from the
    SMTP server and return the code in it."""
    already_there = {id(message) for message in mailbox.messages}
    run_job(verification_job_for(email))
    message = mailbox.wait_for(
        lambda m: id(m) not in already_there and email.lower() in m["To"].lower()
    )
    return code_in(message)


def register(
    client: FlaskClient, email: str, password: str = DEFAULT_PASSWORD, ip: str | None = None
):
    """POST /api/register/, from the socket peer `ip` when given."""
    extra = {"environ_base": {"REMOTE_ADDR": ip}} if ip else {}
    return client.post("/api/register/", json={"email": email, "password": password}, **extra)


def register_and_get_code(
    client: FlaskClient, mailbox: Mailbox, email: str, password: str = DEFAULT_PASSWORD
) -> str:
    response = register(client, email, password)
    assert response.status_code == 201, response.get_json()
    return deliver_code(mailbox, email)


def log_in(client: FlaskClient, email: str, password: str = DEFAULT_PASSWORD) -> dict[str, Any]:
    response = client.post("/api/login/", json={"email": email, "password": password})
    assert response.status_code == 200, response.get_json()
    return response.get_json()


def bearer_header(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _shift_codes(email: str, assignment: str) -> None:
    db.session.execute(
        text(
            f"UPDATE email_otps SET {assignment} "
            "WHERE user_id = (SELECT id FROM users WHERE lower(email) = lower(:email))"
        ),
        {"email": email},
    )
    db.session.commit()


def allow_resend_now(email: str) -> None:
    """Move the user's codes and the address's code cooldowns 61 s into the past, as if
    the resend cooldown had passed."""
    _shift_codes(email, "created_at = created_at - interval '61 seconds'")
    db.session.execute(
        text(
            "UPDATE rate_limit_hits SET "
            "hits = array(SELECT h - interval '61 seconds' FROM unnest(hits) AS h), "
            "expires_at = expires_at - interval '61 seconds' "
            "WHERE key IN ('verification-code-cooldown:' || lower(:email), "
            "'reset-code-cooldown:' || lower(:email))"
        ),
        {"email": email},
    )
    db.session.commit()


def expire_codes(email: str) -> None:
    """Make the user's codes expired, instead of waiting 10 minutes."""
    _shift_codes(email, "expires_at = now() - interval '1 second'")


def codes_of(email: str) -> list[EmailOtp]:
    return list(
        db.session.scalars(
            select(EmailOtp)
            .join(User, User.id == EmailOtp.user_id)
            .where(func.lower(User.email) == email.lower())
            .order_by(EmailOtp.id)
            .execution_options(populate_existing=True)
        )
    )


def sign_up(
    client: FlaskClient, mailbox: Mailbox, email: str, display_name: str, skills: list[str]
) -> dict[str, str]:
    """Register, read the code from the email the worker sent, verify, log in and fill in
    the public profile; the user's Authorization header."""
    registered = client.post("/api/register/", json={"email": email, "password": DEFAULT_PASSWORD})
    assert registered.status_code == 201, registered.get_json()
    message = mailbox.wait_for(lambda m: email in m["To"] and CODE_PATTERN.search(body_of(m)))
    code = CODE_PATTERN.search(body_of(message)).group(1)
    verified = client.post(
        "/api/verify-email/", json={"email": email, "otp": code, "password": DEFAULT_PASSWORD}
    )
    assert verified.status_code == 200, verified.get_json()
    login = client.post("/api/login/", json={"email": email, "password": DEFAULT_PASSWORD})
    assert login.status_code == 200, login.get_json()
    headers = {"Authorization": f"Bearer {login.get_json()['access_token']}"}
    profile = client.patch(
        "/api/me/", json={"display_name": display_name, "skills": skills}, headers=headers
    )
    assert profile.status_code == 200, profile.get_json()
    return headers

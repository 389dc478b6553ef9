"""Helpers for the password reset tests: ask for a code and read it from the real SMTP
server, running the queued mail task in the test process."""

from __future__ import annotations

from flask.testing import FlaskClient
from sqlalchemy import text

from devtools.smtp import Mailbox
from jobboard.extensions import db
from tests.support.auth import QueuedJob, code_in, queued_mail_jobs, run_job


def reset_job_for(email: str) -> QueuedJob:
    """The newest queued password-reset job for `email`."""
    jobs = [
        job
        for job in queued_mail_jobs("send_password_reset_code")
        if job.args["email"] == email.lower()
    ]
    assert jobs, f"no password reset queued for {email}"
    return jobs[-1]


def allow_reset_now(email: str) -> None:
    """Move the reset-code cooldown of `email` past its end."""
    db.session.execute(
        text(
            "UPDATE rate_limit_hits SET hits = array(SELECT h - interval '61 seconds' "
            "FROM unnest(hits) AS h) WHERE key = :key"
        ),
        {"key": f"reset-code-cooldown:{email.lower()}"},
    )
    db.session.commit()


def reset_code_for(client: FlaskClient, mailbox: Mailbox, email: str, ip: str = "10.8.0.1") -> str:
    """POST /api/password/forgot/, run the queued task, return the code it emailed."""
    response = client.post(
        "/api/password/forgot/", json={"email": email}, environ_base={"REMOTE_ADDR": ip}
    )
    assert response.status_code == 202, response.get_json()
    already_there = {id(message) for message in mailbox.messages}
    run_job(reset_job_for(email))
    message = mailbox.wait_for(
        lambda m: id(m) not in already_there and email.lower() in m["To"].lower()
    )
    return code_in(message)

"""POST /api/register/."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, text

from jobboard.extensions import db
from jobboard.models import EmailOtp, User
from tests.support.auth import (
    code_in,
    deliver_code,
    queued_mail_jobs,
    register,
    verification_job_for,
)
from workers.app import QUEUE_MAIL


def test_register_creates_an_unverified_user_and_queues_the_code(client, mailbox):
    response = register(client, "new.person@example.com")

    assert response.status_code == 201
    body = response.get_json()
    assert body == {"id": body["id"], "email": "new.person@example.com", "is_email_verified": False}
    user = db.session.get(User, body["id"])
    assert user.is_email_verified is False
    assert user.password_hash != "correct horse battery"

    jobs = queued_mail_jobs("send_verification_code")
    assert len(jobs) == 1
    assert jobs[0].status == "todo"
    assert set(jobs[0].args) == {"otp_id", "sealed_code", "user_id"}
    # The request only queued the email; nothing reached the SMTP server.
    assert mailbox.messages == []


def test_register_email_carries_a_six_digit_code_that_is_stored_only_hashed(client, mailbox):
    register(client, "hashed@example.com")

    code = deliver_code(mailbox, "hashed@example.com")

    assert len(code) == 6 and code.isdigit()
    (message,) = mailbox.sent_to("hashed@example.com")
    assert code in message["Subject"]
    assert code_in(message) == code
    otp = db.session.scalars(select(EmailOtp)).one()
    assert otp.code_hash != code and code not in otp.code_hash
    assert otp.consumed_at is None
    assert (otp.expires_at - otp.created_at).total_seconds() == 600
    # Neither the codes table nor the queue's arguments hold the code in plaintext.
    job = verification_job_for("hashed@example.com")
    assert code not in str(job.args)
    raw_rows = db.session.execute(text("SELECT row_to_json(o)::text FROM email_otps o")).scalars()
    assert all(code not in row for row in raw_rows)


def test_register_stores_the_email_lower_cased(client):
    response = register(client, "  Mixed.Case@Example.COM ")

    assert response.status_code == 201
    assert response.get_json()["email"] == "mixed.case@example.com"


@pytest.mark.parametrize(
    "existing",
    ["taken@example.com", "TAKEN@example.com", "Taken@Example.Com"],
)
def test_register_refuses_an_email_registered_in_any_letter_case(client, make_user, existing):
    make_user(email=existing)

    response = register(client, "taken@EXAMPLE.com")

    assert response.status_code == 409
    assert response.get_json()["message"] == "An account with this email address already exists."
    assert (
        db.session.scalar(
            select(func.count())
            .select_from(User)
            .where(func.lower(User.email) == "taken@example.com")
        )
        == 1
    )
    assert queued_mail_jobs() == []


@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("short1!", "at least 8 characters"),
        ("", "at least 8 characters"),
        ("1234567890", "digits only"),
        ("weak.email@example.com", "same as the email"),
        ("WEAK.Email@Example.COM", "same as the email"),
    ],
)
def test_register_refuses_a_weak_password(client, password, reason):
    response = register(client, "weak.email@example.com", password)

    assert response.status_code == 422
    body = response.get_json()
    assert body["code"] == 422
    assert body["status"] == "Unprocessable Entity"
    (message,) = body["errors"]["json"]["password"]
    assert reason in message
    assert db.session.scalar(select(func.count()).select_from(User)) == 0


@pytest.mark.parametrize(
    "email", ["not-an-email", "missing-at.example.com", "a@", "@example.com", "x" * 250 + "@e.io"]
)
def test_register_refuses_an_invalid_email(client, email):
    response = register(client, email)

    assert response.status_code == 422
    assert "email" in response.get_json()["errors"]["json"]


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, {"email", "password"}),
        ({"email": "a@example.com"}, {"password"}),
        ({"password": "long enough pw"}, {"email"}),
        ({"email": 42, "password": "long enough pw"}, {"email"}),
        ({"email": "a@example.com", "password": 12345678}, {"password"}),
        ({"email": None, "password": None}, {"email", "password"}),
        ({"email": ["a@example.com"], "password": {"x": 1}}, {"email", "password"}),
        ({"email": "a@example.com", "password": "long enough pw", "admin": True}, {"admin"}),
    ],
)
def test_register_reports_missing_and_mistyped_fields(client, payload, fields):
    response = client.post("/api/register/", json=payload)

    assert response.status_code == 422
    assert set(response.get_json()["errors"]["json"]) == fields


def test_register_refuses_malformed_json_with_400(client):
    response = client.post("/api/register/", data="{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.get_json() == {
        "code": 400,
        "status": "Bad Request",
        "message": "Invalid JSON body.",
        "errors": {"json": ["Invalid JSON body."]},
    }


@pytest.mark.parametrize("payload", [[], ["a@example.com"], "a@example.com", 7, None])
def test_register_refuses_a_body_that_is_not_an_object(client, payload):
    response = client.post("/api/register/", json=payload)

    assert response.status_code == 422
    assert response.get_json()["code"] == 422


def test_register_without_a_body_reports_the_missing_fields(client):
    response = client.post("/api/register/")

    assert response.status_code == 422
    assert set(response.get_json()["errors"]["json"]) == {"email", "password"}


def test_a_refused_registration_leaves_no_user_and_no_email_behind(client):
    """The queue row is written on the request's transaction and rolls back with it."""
    register(client, "first@example.com")
    response = register(client, "FIRST@example.com")

    assert response.status_code == 409
    assert len(queued_mail_jobs()) == 1
    assert db.session.scalar(select(func.count()).select_from(User)) == 1


def test_register_queues_on_the_mail_queue(client):
    register(client, "queue@example.com")

    (job,) = queued_mail_jobs()
    queue_name = db.session.execute(
        text("SELECT queue_name FROM procrastinate_jobs WHERE id = :id"), {"id": job.id}
    ).scalar_one()
    assert queue_name == QUEUE_MAIL

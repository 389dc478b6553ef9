"""POST /api/password/forgot/ and /api/password/reset/, and the takeover they undo."""

from __future__ import annotations

from datetime import timedelta

import psycopg
import pytest
from sqlalchemy import func, select

from config import libpq_url
from jobboard.auth.service import (
    EMAIL_TAKEN,
    EXPIRED_CODE,
    RESET_ACCEPTED,
    WRONG_CODE,
)
from jobboard.extensions import db
from jobboard.models import EmailOtp, OtpPurpose, User, now_utc
from tests.support.auth import (
    DEFAULT_PASSWORD,
    code_in,
    codes_of,
    deliver_code,
    expire_codes,
    queued_mail_jobs,
    register,
    run_job,
)
from tests.support.limits import from_ip, login
from tests.support.polling import wait_until
from tests.support.reset import allow_reset_now, reset_code_for, reset_job_for
from tests.support.smtp import body_of

NEW_PASSWORD = "a brand new secret"
ATTACKER_PASSWORD = "attacker knows this one"


def forgot(client, email: str, ip: str = "10.8.0.1"):
    return client.post("/api/password/forgot/", json={"email": email}, **from_ip(ip))


def reset(client, email: str, otp: str, new_password: str = NEW_PASSWORD, ip: str = "10.8.0.1"):
    return client.post(
        "/api/password/reset/",
        json={"email": email, "otp": otp, "new_password": new_password},
        **from_ip(ip),
    )


# --- the happy path -------------------------------------------------------------------------


def test_forgot_emails_a_reset_code_that_sets_a_new_password(client, verified_user, mailbox):
    code = reset_code_for(client, mailbox, verified_user.email)
    (message,) = mailbox.sent_to(verified_user.email)
    assert message["Subject"] == f"Your jobboard password reset code: {code}"
    assert "POST /api/password/reset/" in body_of(message)

    response = reset(client, verified_user.email, code)

    assert response.status_code == 204
    assert login(client, verified_user.email, DEFAULT_PASSWORD).status_code == 401
    assert login(client, verified_user.email, NEW_PASSWORD).status_code == 200


def test_forgot_answers_202_with_a_message(client, verified_user):
    response = forgot(client, verified_user.email)

    assert response.status_code == 202
    assert response.get_json() == {"message": RESET_ACCEPTED}


def test_a_reset_verifies_the_address_and_kills_every_other_live_code(client, mailbox):
    email = "unverified.reset@example.com"
    assert register(client, email).status_code == 201
    verification_code = deliver_code(mailbox, email)
    code = reset_code_for(client, mailbox, email)

    assert reset(client, email, code).status_code == 204

    user = db.session.scalars(select(User).where(User.email == email)).one()
    db.session.refresh(user)
    assert user.is_email_verified and user.email_verified_at is not None
    assert all(otp.consumed_at is not None for otp in codes_of(email))
    late = client.post(
        "/api/verify-email/",
        json={"email": email, "otp": verification_code, "password": DEFAULT_PASSWORD},
    )
    assert late.status_code == 400  # already verified: the old code is of no use


def test_a_reset_code_works_once(client, verified_user, mailbox):
    code = reset_code_for(client, mailbox, verified_user.email)
    assert reset(client, verified_user.email, code).status_code == 204

    again = reset(client, verified_user.email, code, "yet another secret")

    assert again.status_code == 400
    assert login(client, verified_user.email, NEW_PASSWORD).status_code == 200


def test_a_new_reset_code_replaces_the_previous_one(client, verified_user, mailbox):
    first = reset_code_for(client, mailbox, verified_user.email)
    allow_reset_now(verified_user.email)
    second = reset_code_for(client, mailbox, verified_user.email)
    live = [
        otp
        for otp in codes_of(verified_user.email)
        if otp.consumed_at is None and otp.purpose == OtpPurpose.RESET_PASSWORD
    ]
    assert len(live) == 1

    if first != second:  # equal only by a one-in-a-million chance
        assert reset(client, verified_user.email, first).status_code == 400
    assert reset(client, verified_user.email, second).status_code == 204


def test_reset_and_verification_codes_do_not_mix(client, mailbox):
    email = "mixing@example.com"
    register(client, email)
    verification_code = deliver_code(mailbox, email)
    reset_code = reset_code_for(client, mailbox, email)

    if verification_code != reset_code:
        assert reset(client, email, verification_code).status_code == 400
        wrong = client.post(
            "/api/verify-email/",
            json={"email": email, "otp": reset_code, "password": DEFAULT_PASSWORD},
        )
        assert wrong.status_code == 400
    assert reset(client, email, reset_code).status_code == 204


# --- wrong, expired and dead codes ----------------------------------------------------------


def test_a_wrong_reset_code_is_400_and_counts_the_try(client, verified_user, mailbox):
    code = reset_code_for(client, mailbox, verified_user.email)
    wrong = "000000" if code != "000000" else "111111"

    response = reset(client, verified_user.email, wrong)

    assert response.status_code == 400
    assert response.get_json()["message"] == WRONG_CODE
    (otp,) = [o for o in codes_of(verified_user.email) if o.purpose == OtpPurpose.RESET_PASSWORD]
    assert otp.failed_attempts == 1
    assert login(client, verified_user.email, DEFAULT_PASSWORD).status_code == 200


def test_five_wrong_tries_kill_the_reset_code(client, verified_user, mailbox):
    code = reset_code_for(client, mailbox, verified_user.email)
    wrong = "000000" if code != "000000" else "111111"
    statuses = [reset(client, verified_user.email, wrong).status_code for _ in range(5)]
    assert statuses == [400] * 5

    dead = reset(client, verified_user.email, code)

    assert dead.status_code == 429
    assert "no longer works" in dead.get_json()["message"]
    assert 1 <= int(dead.headers["Retry-After"]) <= 60
    assert login(client, verified_user.email, DEFAULT_PASSWORD).status_code == 200


def test_wrong_tries_kill_the_code_only_for_the_ip_that_made_them(client, verified_user, mailbox):
    """Nobody can kill the owner's code: five wrong tries from an attacker's IP leave the
    code working from any other IP."""
    code = reset_code_for(client, mailbox, verified_user.email)
    wrong = "000000" if code != "000000" else "111111"
    attacker = [reset(client, verified_user.email, wrong, ip="10.66.6.6") for _ in range(5)]
    assert [a.status_code for a in attacker] == [400] * 5
    assert "last try from your IP address" in attacker[-1].get_json()["message"]
    assert reset(client, verified_user.email, code, ip="10.66.6.6").status_code == 429

    owner = reset(client, verified_user.email, code, ip="10.8.0.2")

    assert owner.status_code == 204
    assert login(client, verified_user.email, NEW_PASSWORD).status_code == 200


def test_an_expired_reset_code_is_400_saying_so(client, verified_user, mailbox):
    code = reset_code_for(client, mailbox, verified_user.email)
    expire_codes(verified_user.email)

    response = reset(client, verified_user.email, code)

    assert response.status_code == 400
    assert response.get_json()["message"] == EXPIRED_CODE


def test_reset_for_an_unknown_address_answers_like_a_wrong_code(client):
    response = reset(client, "nobody.known@example.com", "123456")

    assert response.status_code == 400
    assert response.get_json()["message"] == WRONG_CODE


def test_reset_without_asking_for_a_code_answers_like_a_wrong_code(client, verified_user):
    assert reset(client, verified_user.email, "123456").get_json()["message"] == WRONG_CODE


# --- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("new_password", "problem"),
    [("short", "at least 8"), ("12345678901", "digits only"), ("Weak@Example.com", "email")],
)
def test_reset_refuses_a_weak_password_with_422_before_touching_the_code(
    client, mailbox, new_password, problem
):
    email = "weak@example.com"
    register(client, email)
    code = reset_code_for(client, mailbox, email)

    response = reset(client, email, code, new_password)

    assert response.status_code == 422
    assert problem in response.get_json()["errors"]["json"]["new_password"][0]
    assert reset(client, email, code).status_code == 204


@pytest.mark.parametrize(
    ("path", "payload", "fields"),
    [
        ("/api/password/forgot/", {}, {"email"}),
        ("/api/password/forgot/", {"email": "not-an-email"}, {"email"}),
        ("/api/password/forgot/", {"email": "a\u0000b@example.com"}, {"email"}),
        ("/api/password/reset/", {}, {"email", "otp", "new_password"}),
        (
            "/api/password/reset/",
            {"email": "a@example.com", "otp": "12345", "new_password": NEW_PASSWORD},
            {"otp"},
        ),
        (
            "/api/password/reset/",
            {"email": "a@example.com", "otp": 123456, "new_password": NEW_PASSWORD},
            {"otp"},
        ),
    ],
)
def test_malformed_input_is_422(client, path, payload, fields):
    response = client.post(path, json=payload)

    assert response.status_code == 422
    assert set(response.get_json()["errors"]["json"]) == fields


@pytest.mark.parametrize("path", ["/api/password/forgot/", "/api/password/reset/"])
def test_malformed_json_is_400_not_500(client, path):
    response = client.post(path, data="{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.get_json()["code"] == 400


# --- unknown addresses ------------------------------------------------------------------------


def test_forgot_for_an_unknown_address_is_indistinguishable_and_sends_nothing(
    client, verified_user, mailbox
):
    known = forgot(client, verified_user.email)
    unknown = forgot(client, "nobody.home@example.com")

    assert (unknown.status_code, unknown.get_json()) == (known.status_code, known.get_json())
    assert sorted(unknown.headers.keys()) == sorted(known.headers.keys())
    # The same work was queued for both; only the worker knows which has an account.
    assert [job.task_name for job in queued_mail_jobs()] == ["send_password_reset_code"] * 2
    run_job(reset_job_for("nobody.home@example.com"))
    assert mailbox.messages == []
    assert db.session.scalar(select(func.count()).select_from(EmailOtp)) == 0


def test_forgot_has_its_own_cooldown_for_known_and_unknown_addresses(client, verified_user):
    for email in (verified_user.email, "nobody.again@example.com"):
        assert forgot(client, email).status_code == 202
        refused = forgot(client, email, ip="10.8.9.9")
        assert refused.status_code == 429
        assert 55 <= int(refused.headers["Retry-After"]) <= 60
        assert "password reset code per email address per minute" in refused.get_json()["message"]


def test_the_reset_cooldown_is_apart_from_the_verification_cooldown(client, mailbox):
    email = "both.cooldowns@example.com"
    assert register(client, email).status_code == 201

    assert forgot(client, email).status_code == 202
    assert client.post("/api/resend-otp/", json={"email": email}).status_code == 429


# --- registering a taken address ------------------------------------------------------------


def test_registering_an_unverified_address_is_409_pointing_to_the_password_reset(client, user):
    response = register(client, user.email, ATTACKER_PASSWORD)

    assert response.status_code == 409
    assert "POST /api/password/forgot/" in response.get_json()["message"]


def test_registering_a_verified_address_is_409_without_the_hint(client, verified_user):
    response = register(client, verified_user.email.upper())

    assert response.status_code == 409
    assert response.get_json()["message"] == EMAIL_TAKEN


def test_the_takeover_is_undone_in_process(client, mailbox):
    victim = "victim.inproc@example.com"
    assert register(client, victim, ATTACKER_PASSWORD, ip="10.66.0.1").status_code == 201
    attacker_code = deliver_code(mailbox, victim)

    assert register(client, victim, "the victim's own secret").status_code == 409
    code = reset_code_for(client, mailbox, victim)
    assert reset(client, victim, code, "the victim's own secret").status_code == 204

    assert login(client, victim, ATTACKER_PASSWORD).status_code == 401
    assert login(client, victim, "the victim's own secret").status_code == 200
    late = client.post(
        "/api/verify-email/",
        json={"email": victim, "otp": attacker_code, "password": ATTACKER_PASSWORD},
    )
    assert late.status_code == 400


# --- with the real worker and the real SMTP server ------------------------------------------


def test_pre_registration_takeover_end_to_end(live_client, start_worker, mailbox):
    """The attacker registers the victim's address with the attacker's password; the victim
    is refused at registration, follows the message to forgot/reset, and owns the account:
    the attacker's password no longer logs in, the victim's does."""
    start_worker()
    victim = "victim@example.com"
    attacker_ip, victim_ip = "198.51.100.66", "203.0.113.7"
    assert register(live_client, victim, ATTACKER_PASSWORD, ip=attacker_ip).status_code == 201
    attacker_mail = mailbox.wait_for(lambda m: m["To"] == victim)

    refused = register(live_client, victim, "the victim's own secret", ip=victim_ip)
    assert refused.status_code == 409
    assert "POST /api/password/forgot/" in refused.get_json()["message"]

    assert forgot(live_client, victim, ip=victim_ip).status_code == 202
    reset_mail = mailbox.wait_for(lambda m: m["To"] == victim and "reset" in m["Subject"])
    code = code_in(reset_mail)
    assert reset(live_client, victim, code, "the victim's own secret", victim_ip).status_code == 204
    # Single use: the attacker, had they seen it, cannot replay it.
    assert reset(live_client, victim, code, ATTACKER_PASSWORD, attacker_ip).status_code == 400

    assert login(live_client, victim, ATTACKER_PASSWORD, attacker_ip).status_code == 401
    victim_login = login(live_client, victim, "the victim's own secret", victim_ip)
    assert victim_login.status_code == 200
    # The attacker's verification code died with the reset.
    stale = live_client.post(
        "/api/verify-email/",
        json={"email": victim, "otp": code_in(attacker_mail), "password": ATTACKER_PASSWORD},
        **from_ip(attacker_ip),
    )
    assert stale.status_code == 400


def test_forgot_for_an_unknown_address_sends_no_mail_through_the_worker(
    live_client, start_worker, mailbox, make_live_user, fresh_database
):
    start_worker()
    known = make_live_user(email="known.worker@example.com")

    assert forgot(live_client, "unknown.worker@example.com").status_code == 202
    assert forgot(live_client, known.email).status_code == 202

    mailbox.wait_for(lambda m: m["To"] == known.email)

    def both_done() -> bool:
        with psycopg.connect(libpq_url(fresh_database)) as conn:
            row = conn.execute(
                "SELECT count(*) FROM procrastinate_jobs "
                "WHERE task_name = 'send_password_reset_code' AND status = 'succeeded'"
            ).fetchone()
        return row[0] == 2

    wait_until(both_done)
    assert [m["To"] for m in mailbox.messages] == [known.email]


def test_a_reset_code_never_arrives_dead(client, verified_user, mailbox):
    """Issued when the email is sent: however long the task waited, the code is fresh."""
    forgot(client, verified_user.email)
    job = reset_job_for(verified_user.email)

    run_job(job)

    (otp,) = codes_of(verified_user.email)
    assert otp.expires_at > now_utc() + timedelta(minutes=9)

"""POST /api/verify-email/ and POST /api/resend-otp/."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from jobboard.auth.service import (
    DEAD_CODE,
    EXPIRED_CODE,
    LAST_WRONG_TRY,
    RESEND_ACCEPTED,
    WRONG_CODE,
    WRONG_PASSWORD_TO_VERIFY,
)
from jobboard.extensions import db
from jobboard.models import User
from tests.support.auth import (
    DEFAULT_PASSWORD,
    allow_resend_now,
    codes_of,
    deliver_code,
    expire_codes,
    queued_mail_jobs,
    register_and_get_code,
    run_job,
)
from tests.support.limits import age_rate_limits, counted, from_ip, login


def verify(client, email: str, otp: str, password: str = DEFAULT_PASSWORD, ip: str = "10.7.0.1"):
    return client.post(
        "/api/verify-email/",
        json={"email": email, "otp": otp, "password": password},
        **from_ip(ip),
    )


def resend(client, email: str):
    return client.post("/api/resend-otp/", json={"email": email})


def a_wrong_code(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


def user_by_email(email: str) -> User:
    return db.session.scalars(
        select(User).where(User.email == email).execution_options(populate_existing=True)
    ).one()


# --- verify-email ----------------------------------------------------------------------------


def test_verify_with_the_emailed_code_verifies_the_user_and_uses_the_code(client, mailbox):
    code = register_and_get_code(client, mailbox, "verify.me@example.com")

    response = verify(client, "verify.me@example.com", code)

    assert response.status_code == 200
    body = response.get_json()
    assert body == {"id": body["id"], "email": "verify.me@example.com", "is_email_verified": True}
    user = user_by_email("verify.me@example.com")
    assert user.is_email_verified and user.email_verified_at is not None
    (otp,) = codes_of("verify.me@example.com")
    assert otp.consumed_at is not None


def test_verify_compares_the_email_case_insensitively(client, mailbox):
    code = register_and_get_code(client, mailbox, "case@example.com")

    assert verify(client, "  CASE@Example.com", code).status_code == 200


def test_a_used_code_cannot_be_used_again(client, mailbox):
    code = register_and_get_code(client, mailbox, "once@example.com")
    assert verify(client, "once@example.com", code).status_code == 200

    response = verify(client, "once@example.com", code)

    assert response.status_code == 400
    assert response.get_json()["message"] == WRONG_CODE


def test_verify_with_a_wrong_code_is_400_and_counts_the_try(client, mailbox):
    code = register_and_get_code(client, mailbox, "wrong@example.com")

    response = verify(client, "wrong@example.com", a_wrong_code(code))

    assert response.status_code == 400
    assert response.get_json() == {"code": 400, "status": "Bad Request", "message": WRONG_CODE}
    (otp,) = codes_of("wrong@example.com")
    assert otp.failed_attempts == 1 and otp.consumed_at is None
    assert user_by_email("wrong@example.com").is_email_verified is False
    # A wrong try does not burn the code.
    assert verify(client, "wrong@example.com", code).status_code == 200


def test_verify_with_an_expired_code_says_it_expired(client, mailbox):
    code = register_and_get_code(client, mailbox, "late@example.com")
    expire_codes("late@example.com")

    response = verify(client, "late@example.com", code)

    assert response.status_code == 400
    assert response.get_json()["message"] == EXPIRED_CODE
    assert "expired" in EXPIRED_CODE and "expired" not in WRONG_CODE
    assert user_by_email("late@example.com").is_email_verified is False


def test_verify_for_an_unknown_email_answers_like_a_wrong_code(client, mailbox):
    code = register_and_get_code(client, mailbox, "known@example.com")
    wrong = verify(client, "known@example.com", a_wrong_code(code))

    unknown = verify(client, "nobody@example.com", code)

    assert unknown.status_code == wrong.status_code == 400
    assert unknown.get_json() == wrong.get_json()


def test_five_wrong_tries_kill_the_code_even_for_the_right_code(client, mailbox):
    code = register_and_get_code(client, mailbox, "guesser@example.com")
    wrong = a_wrong_code(code)

    answers = [verify(client, "guesser@example.com", wrong) for _ in range(5)]

    assert [a.status_code for a in answers] == [400] * 5
    assert [a.get_json()["message"] for a in answers] == [WRONG_CODE] * 4 + [LAST_WRONG_TRY]
    (otp,) = codes_of("guesser@example.com")
    assert otp.failed_attempts == 5
    assert otp.consumed_at is None  # dead for this IP only

    for attempt in (code, wrong):
        response = verify(client, "guesser@example.com", attempt)
        assert response.status_code == 429
        assert response.get_json()["message"] == DEAD_CODE
    assert user_by_email("guesser@example.com").is_email_verified is False


def test_wrong_tries_from_another_ip_do_not_kill_the_owners_code(client, mailbox):
    code = register_and_get_code(client, mailbox, "owner.ip@example.com")
    for _ in range(5):
        verify(client, "owner.ip@example.com", a_wrong_code(code), ip="10.66.0.1")
    assert verify(client, "owner.ip@example.com", code, ip="10.66.0.1").status_code == 429

    assert verify(client, "owner.ip@example.com", code, ip="10.7.0.2").status_code == 200


# --- the password: a code proves the mailbox, not who registered -------------------------------


def test_the_right_code_with_a_wrong_password_is_401_pointing_to_the_reset(client, mailbox):
    email = "not.mine@example.com"
    code = register_and_get_code(client, mailbox, email, password="the registrant's secret")

    response = verify(client, email, code, password="the mailbox owner's secret")

    assert response.status_code == 401
    assert response.get_json()["message"] == WRONG_PASSWORD_TO_VERIFY
    assert "POST /api/password/forgot/" in WRONG_PASSWORD_TO_VERIFY
    assert user_by_email(email).is_email_verified is False
    # Not a failed code check: the code still works, with the account's password.
    (otp,) = codes_of(email)
    assert otp.consumed_at is None and otp.failed_attempts == 0
    assert counted("code-check-failures-ip:10.7.0.1") == 0
    assert verify(client, email, code, password="the registrant's secret").status_code == 200


def test_a_wrong_password_counts_as_a_failed_login(client, mailbox):
    email = "guessing.password@example.com"
    code = register_and_get_code(client, mailbox, email)
    statuses = [
        verify(client, email, code, password=f"guess number {n}").status_code for n in range(10)
    ]
    assert statuses == [401] * 10
    assert counted(f"login-failures-email-ip:{email}|10.7.0.1") == 10

    refused = verify(client, email, code)

    assert refused.status_code == 429
    assert "failed logins" in refused.get_json()["message"]
    assert login(client, email, ip="10.7.0.1").status_code == 429
    assert verify(client, email, code, ip="10.7.0.9").status_code == 200


def test_the_password_alone_does_not_verify(client, mailbox):
    code = register_and_get_code(client, mailbox, "registrant@example.com")

    response = verify(client, "registrant@example.com", a_wrong_code(code))

    assert response.status_code == 400
    assert response.get_json()["message"] == WRONG_CODE
    assert counted("login-failures-ip:10.7.0.1") == 0  # a wrong code is not a failed login


def test_a_new_code_works_after_the_old_one_was_killed(client, mailbox):
    code = register_and_get_code(client, mailbox, "second.chance@example.com")
    for _ in range(5):
        verify(client, "second.chance@example.com", a_wrong_code(code))
    allow_resend_now("second.chance@example.com")

    assert resend(client, "second.chance@example.com").status_code == 202
    new_code = deliver_code(mailbox, "second.chance@example.com")

    assert verify(client, "second.chance@example.com", new_code).status_code == 200


def test_verify_of_an_already_verified_user_answers_like_an_unknown_address(client, verified_user):
    known = verify(client, verified_user.email, "123456")
    unknown = verify(client, "nobody.at.all@example.com", "123456")

    assert known.status_code == unknown.status_code == 400
    assert known.get_json() == unknown.get_json()


PW = DEFAULT_PASSWORD


@pytest.mark.parametrize(
    ("payload", "fields"),
    [
        ({}, {"email", "otp", "password"}),
        ({"email": "a@example.com", "password": PW}, {"otp"}),
        ({"otp": "123456", "password": PW}, {"email"}),
        ({"email": "a@example.com", "otp": "123456"}, {"password"}),
        ({"email": "a@example.com", "otp": 123456, "password": PW}, {"otp"}),
        ({"email": "a@example.com", "otp": "12345", "password": PW}, {"otp"}),
        ({"email": "a@example.com", "otp": "1234567", "password": PW}, {"otp"}),
        ({"email": "a@example.com", "otp": "12a456", "password": PW}, {"otp"}),
        ({"email": "a@example.com", "otp": None, "password": PW}, {"otp"}),
        ({"email": "a@example.com", "otp": "123456", "password": None}, {"password"}),
        ({"email": "a@example.com", "otp": "123456", "password": 12345678}, {"password"}),
        ({"email": "a@example.com", "otp": "123456", "password": "x" * 257}, {"password"}),
        ({"email": "not-an-email", "otp": "123456", "password": PW}, {"email"}),
        ({"email": "a@example.com", "otp": "123456", "password": PW, "extra": 1}, {"extra"}),
    ],
)
def test_verify_refuses_malformed_input_with_422(client, payload, fields):
    response = client.post("/api/verify-email/", json=payload)

    assert response.status_code == 422
    assert set(response.get_json()["errors"]["json"]) == fields


def test_a_malformed_code_does_not_count_as_a_try(client, mailbox):
    register_and_get_code(client, mailbox, "typo@example.com")

    verify(client, "typo@example.com", "12345")

    (otp,) = codes_of("typo@example.com")
    assert otp.failed_attempts == 0


def test_verify_refuses_malformed_json_with_400(client):
    response = client.post("/api/verify-email/", data="{not json", content_type="application/json")

    assert response.status_code == 400
    assert response.get_json()["errors"] == {"json": ["Invalid JSON body."]}


# --- resend-otp --------------------------------------------------------------------------------


def test_resend_within_a_minute_is_429_with_retry_after(client, mailbox):
    register_and_get_code(client, mailbox, "impatient@example.com")

    response = resend(client, "impatient@example.com")

    assert response.status_code == 429
    retry_after = int(response.headers["Retry-After"])
    assert 55 <= retry_after <= 60
    assert response.get_json()["code"] == 429
    assert len(queued_mail_jobs("send_verification_code")) == 1


def test_retry_after_counts_down_the_remaining_seconds(client, mailbox):
    register_and_get_code(client, mailbox, "countdown@example.com")
    age_rate_limits(45, "verification-code-cooldown:countdown@example.com")

    response = resend(client, "countdown@example.com")

    assert response.status_code == 429
    assert 10 <= int(response.headers["Retry-After"]) <= 15


def test_resend_invalidates_the_previous_code_and_emails_a_new_one(client, mailbox):
    old_code = register_and_get_code(client, mailbox, "resend@example.com")
    allow_resend_now("resend@example.com")

    response = resend(client, "RESEND@example.com")

    assert response.status_code == 202
    assert "message" in response.get_json()
    old_otp, new_otp = codes_of("resend@example.com")
    assert old_otp.consumed_at is not None
    assert new_otp.consumed_at is None
    new_code = deliver_code(mailbox, "resend@example.com")
    assert len(mailbox.sent_to("resend@example.com")) == 2

    if new_code != old_code:  # one chance in a million that they are equal
        assert verify(client, "resend@example.com", old_code).status_code == 400
    assert verify(client, "resend@example.com", new_code).status_code == 200


def test_the_email_of_a_replaced_code_is_not_sent(client, mailbox):
    """The mail task checks the code is still live: re-running it, or running it late,
    never sends a code that no longer works."""
    register_and_get_code(client, mailbox, "stale@example.com")
    first_job = queued_mail_jobs("send_verification_code")[0]
    allow_resend_now("stale@example.com")
    resend(client, "stale@example.com")
    mailbox.clear()

    run_job(first_job)

    assert mailbox.messages == []


def test_resend_to_a_verified_address_answers_like_an_unknown_one_and_sends_nothing(
    client, verified_user
):
    known = resend(client, verified_user.email)
    unknown = resend(client, "nobody.here.either@example.com")

    assert known.status_code == unknown.status_code == 202
    assert known.get_json() == unknown.get_json() == {"message": RESEND_ACCEPTED}
    assert queued_mail_jobs() == []


def test_the_resend_cooldown_holds_for_unknown_addresses_too(client):
    assert resend(client, "nobody.cooling@example.com").status_code == 202

    again = resend(client, "nobody.cooling@example.com")

    assert again.status_code == 429
    assert 55 <= int(again.headers["Retry-After"]) <= 60
    assert "newest in the mailbox" in again.get_json()["message"]


def test_resend_to_an_unknown_address_is_202_and_sends_nothing(client):
    response = resend(client, "nobody.here@example.com")

    assert response.status_code == 202
    assert queued_mail_jobs() == []


@pytest.mark.parametrize("payload", [{}, {"email": "nope"}, {"email": 1}, {"email": None}, []])
def test_resend_refuses_malformed_input_with_422(client, payload):
    response = client.post("/api/resend-otp/", json=payload)

    assert response.status_code == 422


def test_resend_refuses_malformed_json_with_400(client):
    response = client.post("/api/resend-otp/", data="{not json", content_type="application/json")

    assert response.status_code == 400

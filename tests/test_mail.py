"""The mail tasks: real SMTP in the test process, and a real worker end to end."""

from __future__ import annotations

import logging
import re
import socket
import time
from collections.abc import Iterator
from datetime import timedelta

import psycopg
import pytest
from flask import Flask

from config import libpq_url
from devtools.processes import free_port
from jobboard import create_app
from jobboard.auth.service import purge_expired_otps, seal_code, verification_email
from jobboard.extensions import db
from jobboard.mailer import queue_email
from jobboard.models import now_utc
from tests.support.auth import (
    DEFAULT_PASSWORD,
    allow_resend_now,
    bearer_header,
    code_in,
    codes_of,
    expire_codes,
    queued_mail_jobs,
    register,
    run_job,
    verification_job_for,
)
from tests.support.database import make_config
from tests.support.polling import wait_until
from tests.support.smtp import body_of
from workers.app import QUEUE_MAIL, task_app
from workers.mail import SMTP_RETRY, deliver, send_email, send_verification_code

NO_DATABASE = "postgresql://nobody@127.0.0.1:1/none"


# --- the tasks, run in the test process ------------------------------------------------------


def test_send_email_task_delivers_through_smtp(app, mailbox):
    send_email(to="someone@example.com", subject="Hello", body="Body text\nline two")

    message = mailbox.wait_for(lambda m: m["To"] == "someone@example.com")
    assert message["Subject"] == "Hello"
    assert "<no-reply@localhost>" in message["From"]
    assert body_of(message).replace("\r\n", "\n").strip() == "Body text\nline two"


def test_queue_email_defers_send_email_on_the_mail_queue(app, mailbox):
    queue_email("queued@example.com", "Queued", "Sent by the task")

    (job,) = queued_mail_jobs()
    assert job.task_name == "send_email"
    assert job.args == {"to": "queued@example.com", "subject": "Queued", "body": "Sent by the task"}
    assert mailbox.messages == []

    run_job(job)

    assert mailbox.wait_for(lambda m: m["To"] == "queued@example.com")["Subject"] == "Queued"


def test_the_mail_tasks_are_registered_by_name_with_retries():
    task_app.perform_import_paths()
    for name in ("send_email", "send_verification_code"):
        task = task_app.tasks[name]
        assert task.queue == QUEUE_MAIL
        assert task.retry_strategy is SMTP_RETRY
    assert SMTP_RETRY.max_attempts > 1 and SMTP_RETRY.exponential_wait > 1
    assert list(SMTP_RETRY.retry_exceptions) == [OSError]


@pytest.fixture
def app_without_mail_server(smtp_server) -> Iterator[Flask]:
    application = create_app(make_config(NO_DATABASE, smtp_server.port, MAIL_SERVER=None))
    with application.app_context():
        yield application


def test_without_mail_server_the_email_is_logged_instead(app_without_mail_server, mailbox, caplog):
    with caplog.at_level(logging.INFO, logger="workers.mail"):
        send_email(to="dev@example.com", subject="Your code: 123456", body="The code is 123456")

    assert mailbox.messages == []
    (record,) = [r for r in caplog.records if "dev@example.com" in r.getMessage()]
    logged = record.getMessage()
    assert "MAIL_SERVER is not set" in logged
    assert "Subject: Your code: 123456" in logged
    assert "The code is 123456" in logged


def test_an_unreachable_smtp_server_raises_a_retryable_error(smtp_server):
    closed_port = free_port()
    application = create_app(make_config(NO_DATABASE, closed_port))

    with application.app_context(), pytest.raises(OSError):
        deliver("x@example.com", "s", "b")


@pytest.fixture
def silent_smtp_port() -> Iterator[int]:
    """A server that accepts TCP connections and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


def test_a_silent_smtp_server_times_out_instead_of_hanging(silent_smtp_port):
    application = create_app(make_config(NO_DATABASE, silent_smtp_port, MAIL_TIMEOUT=0.3))
    started = time.monotonic()

    # smtplib reports the timeout as SMTPServerDisconnected: an OSError, so it is retried.
    with application.app_context(), pytest.raises(OSError, match="timed out"):
        deliver("x@example.com", "s", "b")

    assert time.monotonic() - started < 5


def test_a_code_that_expired_while_its_email_waited_is_replaced_before_sending(client, mailbox):
    """An email never delivers a dead code."""
    email = "expired.mail@example.com"
    register(client, email)
    job = verification_job_for(email)
    expire_codes(email)
    (old,) = codes_of(email)
    old_hash = old.code_hash

    run_job(job)

    code = code_in(mailbox.wait_for(lambda m: m["To"] == email))
    (refreshed,) = codes_of(email)
    assert refreshed.id == old.id and refreshed.consumed_at is None
    assert refreshed.code_hash != old_hash
    assert refreshed.expires_at > now_utc() + timedelta(minutes=9)
    verified = client.post(
        "/api/verify-email/", json={"email": email, "otp": code, "password": DEFAULT_PASSWORD}
    )
    assert verified.status_code == 200, verified.get_json()


def test_a_refreshed_code_whose_email_failed_is_refreshed_again_on_retry(client, mailbox):
    """The retry's sealed code is the expired one; the value the failed run generated
    reached nobody, so the retry sends yet another fresh code, and that one works."""
    email = "retried.expired@example.com"
    register(client, email)
    job = verification_job_for(email)
    expire_codes(email)
    with client.application.app_context():
        first = verification_email(job.args["otp_id"], job.args["sealed_code"])
    assert first is not None  # built, but say SMTP failed: never delivered

    run_job(job)

    code = code_in(mailbox.wait_for(lambda m: m["To"] == email))
    undelivered = re.search(r"\d{6}", first.subject).group(0)
    if undelivered != code:  # equal only by a one-in-a-million chance
        wrong = client.post(
            "/api/verify-email/",
            json={"email": email, "otp": undelivered, "password": DEFAULT_PASSWORD},
        )
        assert wrong.status_code == 400
    verified = client.post(
        "/api/verify-email/", json={"email": email, "otp": code, "password": DEFAULT_PASSWORD}
    )
    assert verified.status_code == 200, verified.get_json()


def test_a_code_the_purge_deleted_before_its_email_went_out_is_replaced(client, mailbox):
    """The code expired while its email waited and the periodic purge deleted it: the
    email sends a fresh code (never nothing), which verifies the address."""
    email = "purged.mail@example.com"
    register(client, email)
    job = verification_job_for(email)
    expire_codes(email)
    assert purge_expired_otps(now_utc()) == 1

    run_job(job)

    code = code_in(mailbox.wait_for(lambda m: m["To"] == email))
    (fresh,) = codes_of(email)
    assert fresh.id != job.args["otp_id"] and fresh.consumed_at is None
    verified = client.post(
        "/api/verify-email/", json={"email": email, "otp": code, "password": DEFAULT_PASSWORD}
    )
    assert verified.status_code == 200, verified.get_json()


def test_two_emails_of_purged_codes_send_one_fresh_code(client, mailbox):
    """An old email (its code replaced) and the newer one, both codes purged: whichever
    runs first sends a fresh code, the other nothing."""
    email = "purged.twice@example.com"
    register(client, email)
    older = verification_job_for(email)
    allow_resend_now(email)
    assert client.post("/api/resend-otp/", json={"email": email}).status_code == 202
    newer = verification_job_for(email)
    expire_codes(email)
    assert purge_expired_otps(now_utc()) == 2

    run_job(newer)
    run_job(older)

    (message,) = mailbox.sent_to(email)
    (live,) = codes_of(email)
    assert live.consumed_at is None
    verified = client.post(
        "/api/verify-email/",
        json={"email": email, "otp": code_in(message), "password": DEFAULT_PASSWORD},
    )
    assert verified.status_code == 200


def test_the_email_of_a_purged_code_sends_nothing_once_the_address_is_verified(
    client, mailbox, user
):
    from tests.support.factories import EmailOtpFactory

    otp = EmailOtpFactory(user=user, expires_in=timedelta(minutes=-1))
    otp_id = otp.id
    assert purge_expired_otps(now_utc()) == 1
    user.is_email_verified = True
    db.session.commit()

    send_verification_code(otp_id=otp_id, sealed_code=seal_code("123456"), user_id=user.id)

    assert mailbox.messages == []
    assert codes_of(user.email) == []


def test_the_email_of_a_purged_code_of_a_deleted_account_sends_nothing(app, mailbox):
    send_verification_code(otp_id=999_999_998, sealed_code=seal_code("123456"), user_id=999_999)

    assert mailbox.messages == []


def test_the_verification_email_of_a_used_or_replaced_code_is_not_sent(client, mailbox):
    email = "replaced.mail@example.com"
    register(client, email)
    first_job = verification_job_for(email)
    allow_resend_now(email)
    assert client.post("/api/resend-otp/", json={"email": email}).status_code == 202

    run_job(first_job)

    assert mailbox.messages == []


def test_the_verification_task_is_safe_to_run_twice(client, mailbox):
    register(client, "twice.mail@example.com")
    job = verification_job_for("twice.mail@example.com")

    run_job(job)
    run_job(job)

    first, second = mailbox.sent_to("twice.mail@example.com")
    assert code_in(first) == code_in(second)


def test_the_verification_task_of_a_deleted_code_does_nothing(app, mailbox):
    send_verification_code(otp_id=999_999_999, sealed_code=seal_code("123456"))

    assert mailbox.messages == []


def test_a_code_sealed_under_another_secret_key_is_not_sent(client, mailbox):
    register(client, "rekeyed@example.com")
    job = verification_job_for("rekeyed@example.com")
    sealed = job.args["sealed_code"]
    client.application.config["SECRET_KEY"] = "a-different-secret-key-of-enough-length"
    try:
        assert verification_email(job.args["otp_id"], sealed) is None
    finally:
        client.application.config["SECRET_KEY"] = "test-secret-key-with-enough-length-too"


# --- the real worker -------------------------------------------------------------------------


def test_a_new_user_registers_gets_the_code_from_the_worker_and_logs_in(
    live_client, start_worker, mailbox, fresh_database
):
    start_worker()
    email = "end.to.end@example.com"

    registered = register(live_client, email)
    assert registered.status_code == 201

    message = mailbox.wait_for(lambda m: m["To"] == email)
    code = code_in(message)
    verified = live_client.post(
        "/api/verify-email/", json={"email": email, "otp": code, "password": DEFAULT_PASSWORD}
    )
    assert verified.status_code == 200
    assert verified.get_json()["is_email_verified"] is True

    tokens = live_client.post("/api/login/", json={"email": email, "password": DEFAULT_PASSWORD})
    assert tokens.status_code == 200
    me = live_client.get("/api/me/", headers=bearer_header(tokens.get_json()["access_token"]))
    assert me.status_code == 200
    assert me.get_json()["email"] == email
    assert me.get_json()["id"] == registered.get_json()["id"]


def mail_job_state(database_url: str) -> tuple[str, int, bool] | None:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        return connection.execute(
            "SELECT status::text, attempts, scheduled_at > now() FROM procrastinate_jobs "
            "WHERE task_name = 'send_verification_code' ORDER BY id DESC LIMIT 1"
        ).fetchone()


def retry_events(database_url: str) -> int:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        return connection.execute(
            "SELECT count(*) FROM procrastinate_events WHERE type = 'deferred_for_retry'"
        ).fetchone()[0]


def test_an_smtp_outage_is_retried_with_backoff_until_mail_goes_through(
    live_client, start_worker, mailbox, fresh_database
):
    """A worker whose SMTP server is down (nothing listens on its MAIL_PORT) fails the
    send, and Procrastinate puts the job back to `todo` with a later `scheduled_at`. Once a
    worker that reaches the server is running, the retry delivers the code."""
    email = "outage@example.com"
    cut_off = start_worker(MAIL_PORT=str(free_port()))
    register(live_client, email)

    _status, attempts, scheduled_later = wait_until(
        lambda: (
            (state := mail_job_state(fresh_database))
            and state[0] == "todo"
            and state[1] >= 1
            and state
        )
    )
    assert attempts >= 1 and scheduled_later
    assert retry_events(fresh_database) >= 1
    assert mailbox.messages == []
    cut_off.stop()

    start_worker()
    message = mailbox.wait_for(lambda m: m["To"] == email, timeout=40)
    wait_until(lambda: mail_job_state(fresh_database)[0] == "succeeded")

    code = code_in(message)
    verified = live_client.post(
        "/api/verify-email/", json={"email": email, "otp": code, "password": DEFAULT_PASSWORD}
    )
    assert verified.status_code == 200


def test_without_mail_server_the_worker_logs_the_code_for_the_developer(
    live_client, start_worker, mailbox, fresh_database
):
    """What a developer without SMTP sees: the code in the worker's terminal output."""
    email = "terminal.reader@example.com"
    worker = start_worker(MAIL_SERVER="")
    register(live_client, email)

    pattern = re.compile(
        rf"To: {re.escape(email)}\nSubject: Your jobboard verification code: (\d{{6}})"
    )
    match = wait_until(lambda: pattern.search(worker.log_path.read_text()))
    code = match.group(1)

    assert mailbox.messages == []
    verified = live_client.post(
        "/api/verify-email/", json={"email": email, "otp": code, "password": DEFAULT_PASSWORD}
    )
    assert verified.status_code == 200


def test_a_code_that_expires_during_an_smtp_outage_arrives_fresh(
    live_app, live_client, start_worker, mailbox, fresh_database
):
    """The code expires while its email waits for SMTP; the retry that
    finally gets through carries a fresh code, which verifies the address."""
    email = "outage.expired@example.com"
    cut_off = start_worker(MAIL_PORT=str(free_port()))
    register(live_client, email)
    wait_until(
        lambda: (state := mail_job_state(fresh_database)) and state[0] == "todo" and state[1] >= 1
    )
    cut_off.stop()
    with live_app.app_context():
        expire_codes(email)

    start_worker()
    message = mailbox.wait_for(lambda m: m["To"] == email, timeout=40)

    verified = live_client.post(
        "/api/verify-email/",
        json={"email": email, "otp": code_in(message), "password": DEFAULT_PASSWORD},
    )
    assert verified.status_code == 200, verified.get_json()

"""Attacks on accounts and codes, scripted against the real web process: the Procfile's
gunicorn in production mode, the real worker sending mail to the SMTP sink, the Flask CLI
as an operator runs it. Each test is an attack that worked once; it must fail now.

Clients are told apart by their IP: the web process trusts one proxy, so each request
names its client in `X-Forwarded-For` (tests/support/live_web.py). The tests of this
module share one web process, one worker and one database (starting them takes seconds);
each test has addresses and client IPs of its own (`people`), so no test spends
another's budgets.
"""

from __future__ import annotations

import itertools
import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import Message

import psycopg
import pytest
from flask import Flask

from config import libpq_url
from devtools.database import DatabaseServer
from devtools.smtp import Mailbox, SmtpServer
from jobboard import create_app
from jobboard.auth.service import purge_expired_otps
from jobboard.extensions import db
from jobboard.models import now_utc
from tests.support.auth import CODE_PATTERN, allow_resend_now
from tests.support.database import RUN_ID, make_config
from tests.support.factories import UserFactory
from tests.support.live_web import LiveWeb, live_environment, worker_environment
from tests.support.polling import wait_until
from tests.support.smtp import body_of
from tests.support.worker import WorkerProcess

VICTIM_PASSWORD = "the victim's own password"
ATTACKER_PASSWORD = "the attacker's chosen password"
A_FEW = 5  # attacking clients that must not lock an owner out (jobboard/ratelimit.py)


@dataclass
class System:
    web: LiveWeb
    app: Flask
    database_url: str


@pytest.fixture(scope="module")
def system(
    database_server: DatabaseServer,
    template_database: str,
    smtp_server: SmtpServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[System]:
    name = f"{RUN_ID}_attacks"
    url = database_server.create(name, template=template_database)
    env = live_environment(url, smtp_server.port)
    logs = tmp_path_factory.mktemp("attacks")
    web = LiveWeb(env, logs / "web.log")
    worker = WorkerProcess(url, smtp_server.port, **worker_environment(env))
    app = create_app(make_config(url, smtp_server.port))
    try:
        yield System(web, app, url)
    finally:
        worker.stop()
        web.stop()
        with app.app_context():
            db.session.remove()
            db.engine.dispose()
        database_server.drop(name)


@pytest.fixture
def web(system: System) -> LiveWeb:
    return system.web


_people = itertools.count(1)


@dataclass
class People:
    """One test's victim address and client IPs (198.18.N.0/24, a range of its own)."""

    n: int

    @property
    def victim(self) -> str:
        return f"victim{self.n}@example.com"

    def address(self, name: str) -> str:
        return f"{name}{self.n}@example.com"

    @property
    def owner_ip(self) -> str:
        return f"198.18.{self.n}.10"

    @property
    def attacker_ip(self) -> str:
        return f"198.18.{self.n}.66"

    @property
    def a_few_attackers(self) -> list[str]:
        return [f"198.18.{self.n}.{100 + k}" for k in range(A_FEW)]


@pytest.fixture
def people(mailbox: Mailbox) -> People:
    return People(next(_people))


def make_account(system: System, email: str, password: str, verified: bool = True) -> None:
    with system.app.app_context():
        UserFactory(email=email, password=password, verified=verified)


def mail_queue_idle(database_url: str) -> bool:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM procrastinate_jobs "
            "WHERE queue_name = 'mail' AND status IN ('todo', 'doing')"
        ).fetchone()
    return row[0] == 0


def newest_code(mailbox: Mailbox, email: str, subject_word: str) -> str:
    messages = [m for m in mailbox.sent_to(email) if subject_word in m["Subject"]]
    assert messages, f"no {subject_word} email to {email}"
    return code_of(messages[-1])


def code_of(message: Message) -> str:
    match = CODE_PATTERN.search(body_of(message))
    assert match is not None
    return match.group(1)


def wrong_code() -> str:
    return f"{secrets.randbelow(10**6):06d}"


def log_in(web: LiveWeb, email: str, password: str, ip: str):
    return web.post("/api/login/", {"email": email, "password": password}, ip=ip)


# --- admin and verification by pre-registration ----------------------------------------------


def test_create_admin_on_a_pre_registered_address_does_not_keep_the_registrants_password(
    web, people
):
    """The attacker registers the address the operator will later make an admin, with a
    password of their own; the operator runs `flask users create-admin`."""
    email = people.address("ops-boss")
    registered = web.post(
        "/api/register/", {"email": email, "password": ATTACKER_PASSWORD}, ip=people.attacker_ip
    )
    assert registered.status == 201

    operator_password = "the operator's new admin password"
    ran = web.flask("users", "create-admin", email, "--password-stdin", stdin=operator_password)

    assert ran.returncode == 0, ran.stderr
    screen = " ".join((ran.stdout + ran.stderr).split())
    assert "never verified" in screen and "replaced" in screen
    assert log_in(web, email, ATTACKER_PASSWORD, people.attacker_ip).status == 401
    tokens = log_in(web, email, operator_password, people.owner_ip)
    assert tokens.status == 200
    me = web.get("/api/me/", token=tokens.body["access_token"])
    assert me.body["is_admin"] is True and me.body["is_email_verified"] is True


def test_users_verify_on_a_pre_registered_address_clears_the_registrants_password(
    web, people, mailbox
):
    victim = people.victim
    registered = web.post(
        "/api/register/", {"email": victim, "password": ATTACKER_PASSWORD}, ip=people.attacker_ip
    )
    assert registered.status == 201

    ran = web.flask("users", "verify", victim)

    assert ran.returncode == 0, ran.stderr
    assert "/api/password/forgot/" in ran.stdout + ran.stderr
    assert log_in(web, victim, ATTACKER_PASSWORD, people.attacker_ip).status == 401
    # The owner of the mailbox sets a password through the reset, and signs in.
    assert web.post("/api/password/forgot/", {"email": victim}, ip=people.owner_ip).status == 202
    code = code_of(mailbox.wait_for(lambda m: victim in m["To"] and "reset" in m["Subject"]))
    reset = web.post(
        "/api/password/reset/",
        {"email": victim, "otp": code, "new_password": VICTIM_PASSWORD},
        ip=people.owner_ip,
    )
    assert reset.status == 204, reset.body
    assert log_in(web, victim, VICTIM_PASSWORD, people.owner_ip).status == 200


# --- takeover through the verification code ---------------------------------------------------


def test_the_verification_code_does_not_hand_the_registrants_account_to_the_mailbox(
    system, web, people, mailbox
):
    """The attacker registers the victim's address with their own password; the victim
    gets 409, asks for a code, and enters it. The victim's verification must not verify
    the attacker's account."""
    victim = people.victim
    registered = web.post(
        "/api/register/", {"email": victim, "password": ATTACKER_PASSWORD}, ip=people.attacker_ip
    )
    assert registered.status == 201
    taken = web.post(
        "/api/register/", {"email": victim, "password": VICTIM_PASSWORD}, ip=people.owner_ip
    )
    assert taken.status == 409
    mailbox.wait_for(lambda m: victim in m["To"])  # the attacker's registration code
    mailbox.clear()
    with system.app.app_context():
        allow_resend_now(victim)  # a minute later
    asked = web.post("/api/resend-otp/", {"email": victim}, ip=people.owner_ip)
    assert asked.status == 202
    code = code_of(mailbox.wait_for(lambda m: victim in m["To"]))

    verified = web.post(
        "/api/verify-email/",
        {"email": victim, "otp": code, "password": VICTIM_PASSWORD},
        ip=people.owner_ip,
    )

    assert verified.status == 401
    assert "/api/password/forgot/" in verified.message
    assert log_in(web, victim, ATTACKER_PASSWORD, people.attacker_ip).status == 403
    # The registrant, who knows the password but not the code, cannot verify either.
    guess = web.post(
        "/api/verify-email/",
        {"email": victim, "otp": wrong_code(), "password": ATTACKER_PASSWORD},
        ip=people.attacker_ip,
    )
    assert guess.status == 400


# --- locking the owner out of recovery -----------------------------------------------------------


def attack_until_refused(web: LiveWeb, victim: str, ip: str) -> None:
    """Everything one client can send against `victim`'s codes: code requests of both
    kinds and wrong codes on both checks, until each call is refused."""
    for _ in range(25):
        answers = [
            web.post("/api/password/forgot/", {"email": victim}, ip=ip),
            web.post("/api/resend-otp/", {"email": victim}, ip=ip),
            web.post(
                "/api/password/reset/",
                {"email": victim, "otp": wrong_code(), "new_password": ATTACKER_PASSWORD},
                ip=ip,
            ),
            web.post(
                "/api/verify-email/",
                {"email": victim, "otp": wrong_code(), "password": ATTACKER_PASSWORD},
                ip=ip,
            ),
        ]
        assert all(a.status in (202, 400, 429) for a in answers), answers
        if all(a.status == 429 for a in answers):
            return
    raise AssertionError(f"{ip} was never refused")


def test_a_few_attackers_cannot_lock_the_owner_out_of_a_password_reset(
    system, web, people, mailbox
):
    victim = people.victim
    make_account(system, victim, VICTIM_PASSWORD)
    for ip in people.a_few_attackers:
        attack_until_refused(web, victim, ip)
    wait_until(lambda: mail_queue_idle(system.database_url))

    # The owner asks for a code; within the cooldown of the attackers' own request the
    # answer is 429, but a live code is already in the mailbox either way.
    asked = web.post("/api/password/forgot/", {"email": victim}, ip=people.owner_ip)
    assert asked.status in (202, 429), asked.body
    if asked.status == 429:
        assert int(asked.headers["Retry-After"]) <= 60
        assert "newest in the mailbox" in asked.message
    wait_until(lambda: mail_queue_idle(system.database_url))
    code = newest_code(mailbox, victim, "reset")

    reset = web.post(
        "/api/password/reset/",
        {"email": victim, "otp": code, "new_password": "owner's new one"},
        ip=people.owner_ip,
    )

    assert reset.status == 204, reset.body
    assert log_in(web, victim, "owner's new one", people.owner_ip).status == 200


def test_a_few_attackers_cannot_lock_the_owner_out_of_verifying(system, web, people, mailbox):
    victim = people.victim
    registered = web.post(
        "/api/register/", {"email": victim, "password": VICTIM_PASSWORD}, ip=people.owner_ip
    )
    assert registered.status == 201
    for ip in people.a_few_attackers:
        attack_until_refused(web, victim, ip)
    wait_until(lambda: mail_queue_idle(system.database_url))
    code = newest_code(mailbox, victim, "verification")

    verified = web.post(
        "/api/verify-email/",
        {"email": victim, "otp": code, "password": VICTIM_PASSWORD},
        ip=people.owner_ip,
    )

    assert verified.status == 200, verified.body
    assert log_in(web, victim, VICTIM_PASSWORD, people.owner_ip).status == 200


def test_a_thousand_attacking_ips_get_too_few_guesses_to_find_a_code(system, web, people, mailbox):
    """1,000 client IPs guess the reset code of one address, 8 at a time, each until it
    is refused. The guesses the server checks (answered 400, not 429) bound the chance
    that any was right: at most n / (10**6 - n) for n guesses of a 6-digit code."""
    victim = people.victim
    make_account(system, victim, VICTIM_PASSWORD)
    asked = web.post("/api/password/forgot/", {"email": victim}, ip=people.owner_ip)
    assert asked.status == 202
    wait_until(lambda: mail_queue_idle(system.database_url))
    real_code = newest_code(mailbox, victim, "reset")

    def guess_until_refused(n: int) -> list[int]:
        ip = f"10.{n // 250}.{n % 250}.1"
        statuses = []
        while True:
            guess = wrong_code()
            if guess == real_code:
                continue
            answer = web.post(
                "/api/password/reset/",
                {"email": victim, "otp": guess, "new_password": ATTACKER_PASSWORD},
                ip=ip,
            )
            statuses.append(answer.status)
            if answer.status != 400:
                return statuses

    with ThreadPoolExecutor(max_workers=8) as pool:
        per_ip = list(pool.map(guess_until_refused, range(1000)))

    assert all(s[-1] == 429 for s in per_ip)
    checked = sum(s.count(400) for s in per_ip)
    chance = checked / (10**6 - checked)
    assert chance < 1e-4, f"{checked} guesses checked in the hour: {chance:.2e}"
    assert checked <= 60
    # The owner's code was never killed by the guesses of others: it is refused now only
    # because the address's guess budget is spent (the whole hour, any IP).
    owner = web.post(
        "/api/password/reset/",
        {"email": victim, "otp": real_code, "new_password": "owner's new one"},
        ip=people.owner_ip,
    )
    assert owner.status == 429
    assert "failed code checks for one email address per hour" in owner.message


# --- a code lost to the purge while SMTP was down ---------------------------------------------


def test_a_code_purged_during_an_smtp_outage_is_replaced_by_a_fresh_one(
    fresh_database, live_app, start_worker, tmp_path
):
    """SMTP is down for longer than a code lives (OTP_TTL_MINUTES shortened to 6 s); the
    purge deletes the expired, unsent code between two retries of its email; when SMTP
    is back, the next retry sends a fresh code, which verifies the address."""
    smtp = SmtpServer()
    env = live_environment(fresh_database, smtp.port)
    env["OTP_TTL_MINUTES"] = "0.1"
    web = LiveWeb(env, tmp_path / "web.log")
    try:
        smtp.stop()  # the outage starts
        start_worker(**worker_environment(env))
        email = "purged.during.outage@example.com"
        registered = web.post("/api/register/", {"email": email, "password": VICTIM_PASSWORD})
        assert registered.status == 201
        # The first try (at once) and the first retry (3 s later) fail; the next retry
        # comes 9 s after that. Meanwhile the code expires and the purge deletes it.
        wait_until(lambda: failed_mail_attempts(fresh_database) >= 2)
        wait_until(lambda: live_codes_expired(fresh_database), timeout=30)
        with live_app.app_context():
            assert purge_expired_otps(now_utc()) == 1
        smtp = SmtpServer(smtp.mailbox, port=smtp.port)  # the outage ends

        message = smtp.mailbox.wait_for(lambda m: email in m["To"], timeout=60)

        verified = web.post(
            "/api/verify-email/",
            {"email": email, "otp": code_of(message), "password": VICTIM_PASSWORD},
        )
        assert verified.status == 200, verified.body
    finally:
        web.stop()
        smtp.stop()


def failed_mail_attempts(database_url: str) -> int:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        return connection.execute(
            "SELECT count(*) FROM procrastinate_events WHERE type = 'deferred_for_retry'"
        ).fetchone()[0]


def live_codes_expired(database_url: str) -> bool:
    with psycopg.connect(libpq_url(database_url), autocommit=True) as connection:
        return connection.execute(
            "SELECT bool_and(expires_at <= now()) FROM email_otps"
        ).fetchone()[0]


# --- mail through bids ---------------------------------------------------------------------


def test_bidding_and_withdrawing_in_a_loop_mails_the_owner_once_with_the_text_quoted(
    system, web, people, mailbox
):
    owner_email, spammer_email = people.address("owner"), people.address("spammer")
    make_account(system, owner_email, VICTIM_PASSWORD)
    make_account(system, spammer_email, ATTACKER_PASSWORD)
    owner = log_in(web, owner_email, VICTIM_PASSWORD, people.owner_ip).body["access_token"]
    spammer = log_in(web, spammer_email, ATTACKER_PASSWORD, people.attacker_ip).body
    spammer = spammer["access_token"]
    profile = {"display_name": "Support see www.evil.example"}
    assert web.call("PATCH", "/api/me/", profile, token=spammer).status == 200
    job = web.post("/api/jobs/", {"name": "Translate", "kind": "manual"}, token=owner).body
    bid = {
        "fee": "1.00",
        "proposed_deadline": "2099-01-01",
        "comment": "Your account is locked, log in at http://evil.example/login now",
    }

    for _ in range(12):
        placed = web.post(f"/api/jobs/{job['id']}/bids/", bid, token=spammer)
        assert placed.status == 201, placed.body
        withdrawn = web.delete(f"/api/jobs/{job['id']}/bids/{placed.body['id']}/", token=spammer)
        assert withdrawn.status == 200
    wait_until(lambda: mail_queue_idle(system.database_url))

    (notice,) = mailbox.sent_to(owner_email)
    text = body_of(notice)
    assert "http://evil.example" not in text and "www.evil.example" not in text
    # Quoted, with zero-width spaces that keep any mail client from making a link of it.
    quoted = "> Your account is locked, log in at http://evil.example/login now"
    assert quoted in text.replace("\u200b", "")
    assert "was written by another user, not by jobboard" in text


# --- which addresses exist -----------------------------------------------------------------


def test_resend_and_verify_answer_alike_for_verified_and_unknown_addresses(system, web, people):
    known, unknown = people.address("known"), people.address("unknown")
    make_account(system, known, VICTIM_PASSWORD)
    answers = {}
    for email, ip in ((known, people.owner_ip), (unknown, people.attacker_ip)):
        resend = web.post("/api/resend-otp/", {"email": email}, ip=ip)
        verify = web.post(
            "/api/verify-email/",
            {"email": email, "otp": "123456", "password": VICTIM_PASSWORD},
            ip=ip,
        )
        answers[email] = (resend.status, resend.body, verify.status, verify.body)

    assert answers[known] == answers[unknown]
    assert answers[known][0] == 202


def test_registering_taken_addresses_is_counted_per_ip(system, web, people):
    taken = [people.address(f"taken{k}-") for k in range(21)]
    for email in taken:
        make_account(system, email, VICTIM_PASSWORD)
    statuses = [
        web.post(
            "/api/register/",
            {"email": email, "password": ATTACKER_PASSWORD},
            ip=people.attacker_ip,
        ).status
        for email in taken
    ]

    assert statuses == [409] * 20 + [429]
    elsewhere = web.post(
        "/api/register/", {"email": taken[0], "password": ATTACKER_PASSWORD}, ip=people.owner_ip
    )
    assert elsewhere.status == 409


# --- refresh-token reuse --------------------------------------------------------------------


def test_a_rotated_refresh_token_presented_again_revokes_its_whole_family(system, web, people):
    email = people.address("session")
    make_account(system, email, VICTIM_PASSWORD)
    first = log_in(web, email, VICTIM_PASSWORD, people.owner_ip).body
    other_login = log_in(web, email, VICTIM_PASSWORD, people.owner_ip).body
    rotated = web.post("/api/token/refresh/", token=first["refresh_token"]).body
    again = web.post("/api/token/refresh/", token=rotated["refresh_token"]).body

    stolen = web.post("/api/token/refresh/", token=first["refresh_token"], ip=people.attacker_ip)

    assert stolen.status == 401
    for token in (rotated["refresh_token"], again["refresh_token"]):
        assert web.post("/api/token/refresh/", token=token).status == 401
    for token in (first["access_token"], rotated["access_token"], again["access_token"]):
        assert web.get("/api/me/", token=token).status == 401
    # Another login of the same user is another family: untouched.
    assert web.get("/api/me/", token=other_login["access_token"]).status == 200
    assert web.post("/api/token/refresh/", token=other_login["refresh_token"]).status == 200


# --- IPv6 clients ------------------------------------------------------------------------------


def test_failed_logins_from_one_ipv6_64_are_counted_together(system, web, people):
    email = people.address("v6-")
    make_account(system, email, VICTIM_PASSWORD)
    statuses = [
        log_in(web, email, "wrong password!", ip=f"2001:db8:{people.n}:2::{k:x}").status
        for k in range(1, 12)
    ]

    assert statuses == [401] * 10 + [429]
    assert log_in(web, email, VICTIM_PASSWORD, ip=f"2001:db8:{people.n}:3::1").status == 200

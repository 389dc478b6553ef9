"""`flask users ...`, `flask otp ...` and `flask demo seed`, through Flask's CLI runner;
and the CLI as a shell sees it: data on stdout, notes on stderr, no library chatter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select, text

from config import PROJECT_ROOT
from jobboard.auth.passwords import password_matches
from jobboard.auth.service import PasswordNeeded, make_admin
from jobboard.demo import DEMO_PASSWORD, KINDS
from jobboard.extensions import db
from jobboard.jobs.service import entry_marks
from jobboard.models import (
    Bid,
    BidStatus,
    EmailOtp,
    Job,
    JobResult,
    JobStatus,
    User,
    now_utc,
)
from tests.support.auth import DEFAULT_PASSWORD
from tests.support.factories import EmailOtpFactory

NEW_PASSWORD = "a long admin password"


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def user_by_email(email: str) -> User | None:
    db.session.expire_all()
    return db.session.scalars(select(User).where(func.lower(User.email) == email.lower())).first()


# --- the groups exist ---------------------------------------------------------------------------


@pytest.mark.parametrize("group", ["users", "otp", "jobs", "demo", "plans"])
def test_groups_are_registered(runner, group):
    result = runner.invoke(args=[group, "--help"])
    assert result.exit_code == 0, result.output


# --- users create-admin ------------------------------------------------------------------------


def test_create_admin_prompts_twice_hidden_and_creates_a_verified_admin(runner):
    result = runner.invoke(
        args=["users", "create-admin", "Boss@Example.com"], input=f"{NEW_PASSWORD}\n" * 2
    )
    assert result.exit_code == 0, result.output
    assert "New password for boss@example.com" in result.stderr  # prompts are not data
    assert "Repeat for confirmation" in result.stderr
    # Hidden input: the password is never echoed back.
    assert NEW_PASSWORD not in result.output
    admin = user_by_email("boss@example.com")
    assert admin.email == "boss@example.com"
    assert admin.is_admin and admin.is_email_verified
    assert admin.email_verified_at is not None
    assert password_matches(admin.password_hash, NEW_PASSWORD)
    assert result.stdout.startswith(f"Created boss@example.com (user {admin.id}): a verified admin")


def test_created_admin_can_log_in_and_sees_the_queue(runner, client):
    runner.invoke(args=["users", "create-admin", "ops@example.com"], input=f"{NEW_PASSWORD}\n" * 2)
    login = client.post("/api/login/", json={"email": "ops@example.com", "password": NEW_PASSWORD})
    assert login.status_code == 200
    token = login.get_json()["access_token"]
    body = client.get("/api/dashboard/", headers={"Authorization": f"Bearer {token}"}).get_json()
    assert "queue" in body


def test_create_admin_refuses_mismatched_confirmation(runner):
    result = runner.invoke(
        args=["users", "create-admin", "boss@example.com"],
        input=f"{NEW_PASSWORD}\nsomething else\n",
    )
    assert result.exit_code != 0
    assert "do not match" in result.output
    assert user_by_email("boss@example.com") is None


@pytest.mark.parametrize(
    ("password", "problem"),
    [("short", "at least"), ("1234567890", "digits"), ("boss@example.com", "email")],
)
def test_create_admin_refuses_weak_passwords(runner, password, problem):
    result = runner.invoke(
        args=["users", "create-admin", "boss@example.com"], input=f"{password}\n" * 2
    )
    assert result.exit_code == 1
    assert problem in result.output
    assert user_by_email("boss@example.com") is None


@pytest.mark.parametrize("email", ["not-an-email", "", "a@", "@b.com"])
def test_create_admin_refuses_invalid_emails(runner, email):
    result = runner.invoke(args=["users", "create-admin", email], input=f"{NEW_PASSWORD}\n" * 2)
    assert result.exit_code == 2
    assert "not an email address" in result.output


def test_create_admin_needs_an_email(runner):
    result = runner.invoke(args=["users", "create-admin"])
    assert result.exit_code == 2
    assert "Missing argument" in result.output


def test_create_admin_promotes_a_verified_user_keeping_their_password(runner, make_user):
    existing = make_user(email="Member@Example.com")
    result = runner.invoke(args=["users", "create-admin", "member@example.COM"])
    assert result.exit_code == 0, result.output
    assert "New password" not in result.output  # nothing asked
    promoted = user_by_email("member@example.com")
    assert promoted.id == existing.id
    assert promoted.is_admin and promoted.is_email_verified
    assert password_matches(promoted.password_hash, DEFAULT_PASSWORD)
    assert promoted.token_generation == existing.token_generation
    assert f"{existing.email} (user {existing.id}) is now an admin" in result.output
    assert "own password" in result.output


def test_create_admin_of_an_unverified_user_replaces_the_registrants_password(runner, make_user):
    """Whoever registered an address nobody proved chose its password: promoting it must
    not hand them an admin account."""
    registered = make_user(email="ops-boss@example.com", verified=False)
    generation = registered.token_generation

    result = runner.invoke(
        args=["users", "create-admin", "ops-boss@example.com"], input=f"{NEW_PASSWORD}\n" * 2
    )

    assert result.exit_code == 0, result.output
    assert "New password for ops-boss@example.com" in result.output
    admin = user_by_email("ops-boss@example.com")
    assert admin.id == registered.id and admin.is_admin and admin.is_email_verified
    assert not password_matches(admin.password_hash, DEFAULT_PASSWORD)
    assert password_matches(admin.password_hash, NEW_PASSWORD)
    assert admin.token_generation == generation + 1
    screen = " ".join(result.output.split())
    assert "never verified" in screen and "replaced by the one you entered" in screen
    assert "token" in screen and "Give the new password to the address's owner" in screen


def test_create_admin_reads_the_password_from_stdin_for_scripts(runner, make_user):
    make_user(email="scripted@example.com", verified=False)

    result = runner.invoke(
        args=["users", "create-admin", "scripted@example.com", "--password-stdin"],
        input=f"{NEW_PASSWORD}\n",
    )

    assert result.exit_code == 0, result.output
    assert "New password" not in result.output  # nothing asked
    assert password_matches(user_by_email("scripted@example.com").password_hash, NEW_PASSWORD)


@pytest.mark.parametrize("stdin", ["", "\n", "short\n", "scripted@example.com\n"])
def test_create_admin_refuses_a_weak_or_missing_password_on_stdin(runner, stdin):
    result = runner.invoke(
        args=["users", "create-admin", "scripted@example.com", "--password-stdin"], input=stdin
    )

    assert result.exit_code == 1
    assert "Error: Password" in result.output
    assert user_by_email("scripted@example.com") is None


def test_create_admin_of_a_verified_user_says_a_password_on_stdin_was_not_used(
    runner, verified_user
):
    result = runner.invoke(
        args=["users", "create-admin", verified_user.email, "--password-stdin"],
        input=f"{NEW_PASSWORD}\n",
    )

    assert result.exit_code == 0, result.output
    assert "was not used" in result.output
    assert password_matches(user_by_email(verified_user.email).password_hash, DEFAULT_PASSWORD)


def test_create_admin_twice_is_harmless(runner, admin_user):
    result = runner.invoke(args=["users", "create-admin", admin_user.email])
    assert result.exit_code == 0
    assert "already an admin; nothing changed" in result.output
    assert db.session.scalar(select(func.count()).select_from(User).where(User.is_admin)) == 1


def test_make_admin_needs_a_password_when_the_account_changed_meanwhile(app, make_user):
    """The command asks for a password only when the account needs one; an address that
    got registered between the question and the change is refused, never promoted with
    its registrant's password."""
    make_user(email="appeared@example.com", verified=False)

    with pytest.raises(PasswordNeeded):
        make_admin("appeared@example.com", None)

    assert not user_by_email("appeared@example.com").is_admin


# --- users list ---------------------------------------------------------------------------------


def test_list_shows_every_user_with_flags(runner, make_user):
    make_user(email="alice@example.com", display_name="Alice A")
    make_user(email="bob@example.com", verified=False)
    make_user(email="carol@example.com", admin=True)
    result = runner.invoke(args=["users", "list"])
    assert result.exit_code == 0
    header, *rows = result.stdout.splitlines()
    assert header.split() == ["id", "email", "verified", "admin", "name", "created"]
    lines = {line.split()[1]: line for line in rows}
    assert set(lines) == {"alice@example.com", "bob@example.com", "carol@example.com"}
    assert lines["alice@example.com"].split()[2:4] == ["yes", "no"]
    assert "Alice A" in lines["alice@example.com"]
    assert lines["bob@example.com"].split()[2:4] == ["no", "no"]
    assert lines["carol@example.com"].split()[2:4] == ["yes", "yes"]
    assert result.stderr.splitlines() == ["3 user(s)"]  # a note, not a row


def test_list_filters(runner, make_user):
    make_user(email="alice@example.com")
    make_user(email="bob@example.com", verified=False)
    make_user(email="carol@example.com", admin=True)
    admins = runner.invoke(args=["users", "list", "--admins"]).output
    assert "carol@example.com" in admins and "alice@example.com" not in admins
    unverified = runner.invoke(args=["users", "list", "--unverified"]).output
    assert "bob@example.com" in unverified and "carol@example.com" not in unverified


def test_list_of_nobody(runner):
    result = runner.invoke(args=["users", "list"])
    assert result.exit_code == 0
    assert len(result.stdout.splitlines()) == 1  # the header
    assert result.stderr.splitlines() == ["0 user(s)"]


def test_list_as_json(runner, make_user):
    alice = make_user(email="alice@example.com", display_name="Alice A")
    make_user(email="bob@example.com", verified=False)
    result = runner.invoke(args=["users", "list", "--unverified", "--json"])
    assert result.exit_code == 0, result.output
    users = json.loads(result.stdout)
    assert [user["email"] for user in users] == ["bob@example.com"]
    assert users[0]["verified"] is False and users[0]["admin"] is False
    everyone = json.loads(runner.invoke(args=["users", "list", "--json"]).stdout)
    first = next(user for user in everyone if user["id"] == alice.id)
    assert first["name"] == "Alice A"
    assert first["created"] == alice.created_at.isoformat()


def test_list_refuses_unknown_options(runner):
    assert runner.invoke(args=["users", "list", "--everyone"]).exit_code == 2


# --- users verify -------------------------------------------------------------------------------


def test_verify_marks_the_user_verified_retires_their_code_and_clears_the_password(runner, user):
    otp = EmailOtpFactory(user=user, expires_in=timedelta(minutes=5))
    generation = user.token_generation

    result = runner.invoke(args=["users", "verify", user.email.upper()])

    assert result.exit_code == 0, result.output
    verified = user_by_email(user.email)
    assert verified.is_email_verified
    assert verified.email_verified_at is not None
    assert verified.password_hash is None
    assert verified.token_generation == generation + 1
    assert db.session.get(EmailOtp, otp.id).consumed_at is not None
    screen = " ".join(result.output.split())
    assert f"Verified {user.email} (user {user.id})" in screen
    assert "cleared" in screen
    assert "POST /api/password/forgot/" in screen and "POST /api/password/reset/" in screen


def test_after_verify_the_registrants_password_no_longer_logs_in_and_a_reset_sets_one(
    runner, client, user, mailbox
):
    from tests.support.reset import reset_code_for

    runner.invoke(args=["users", "verify", user.email])
    refused = client.post("/api/login/", json={"email": user.email, "password": DEFAULT_PASSWORD})
    assert refused.status_code == 401

    code = reset_code_for(client, mailbox, user.email)
    reset = client.post(
        "/api/password/reset/",
        json={"email": user.email, "otp": code, "new_password": NEW_PASSWORD},
    )
    assert reset.status_code == 204
    allowed = client.post("/api/login/", json={"email": user.email, "password": NEW_PASSWORD})
    assert allowed.status_code == 200


def test_verify_with_a_password_on_stdin_sets_it(runner, client, user):
    result = runner.invoke(
        args=["users", "verify", user.email, "--password-stdin"], input=f"{NEW_PASSWORD}\n"
    )

    assert result.exit_code == 0, result.output
    assert "replaced by the one you gave" in " ".join(result.output.split())
    for password, status in ((DEFAULT_PASSWORD, 401), (NEW_PASSWORD, 200)):
        login = client.post("/api/login/", json={"email": user.email, "password": password})
        assert login.status_code == status


def test_verify_refuses_a_weak_password_on_stdin_and_changes_nothing(runner, user):
    result = runner.invoke(args=["users", "verify", user.email, "--password-stdin"], input="1\n")

    assert result.exit_code == 1
    unchanged = user_by_email(user.email)
    assert not unchanged.is_email_verified
    assert password_matches(unchanged.password_hash, DEFAULT_PASSWORD)


def test_verify_an_already_verified_user_is_harmless(runner, verified_user):
    before = verified_user.email_verified_at
    result = runner.invoke(args=["users", "verify", verified_user.email, "--password-stdin"])
    assert result.exit_code == 0
    assert "already verified; nothing changed" in result.output
    still = user_by_email(verified_user.email)
    assert still.email_verified_at == before
    assert password_matches(still.password_hash, DEFAULT_PASSWORD)


def test_verify_unknown_email_fails(runner):
    result = runner.invoke(args=["users", "verify", "nobody@example.com"])
    assert result.exit_code == 1
    assert result.stderr == "Error: No user with email nobody@example.com.\n"
    assert result.stdout == ""


def test_verify_invalid_email_fails(runner):
    result = runner.invoke(args=["users", "verify", "nobody"])
    assert result.exit_code == 2


# --- otp cleanup --------------------------------------------------------------------------------


def test_otp_cleanup_deletes_expired_and_used_codes_only(runner, make_user):
    first, second, third = make_user(verified=False), make_user(verified=False), make_user()
    live = EmailOtpFactory(user=first, expires_in=timedelta(minutes=5))
    EmailOtpFactory(user=second, expires_in=timedelta(minutes=-1))
    EmailOtpFactory(user=third, expires_in=timedelta(minutes=5), consumed=True)

    result = runner.invoke(args=["otp", "cleanup"])

    assert result.exit_code == 0, result.output
    db.session.expire_all()
    assert db.session.scalars(select(EmailOtp.id)).all() == [live.id]
    assert result.stdout == "deleted 2 expired or used one-time code(s)\n"


def test_otp_cleanup_with_nothing_to_do(runner):
    result = runner.invoke(args=["otp", "cleanup"])
    assert result.exit_code == 0
    assert "deleted 0" in result.stdout
    assert json.loads(runner.invoke(args=["otp", "cleanup", "--json"]).stdout) == {"deleted": 0}


# --- demo seed ----------------------------------------------------------------------------------


def demo_jobs() -> list[Job]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(Job).join(User, Job.owner_id == User.id).where(User.email.like("demo-%"))
        )
    )


def seed(runner, *args: str):
    result = runner.invoke(args=["demo", "seed", *args])
    assert result.exit_code == 0, result.output
    return result


def test_seed_creates_realistic_users(runner, client):
    result = seed(runner, "--users", "4", "--jobs", "20", "--seed", "3")
    assert "Seeding demo jobs" in result.stderr  # the progress bar
    users = db.session.scalars(
        select(User).where(User.email.like("demo-%")).order_by(User.email)
    ).all()
    assert [u.email for u in users] == [f"demo-{n}@example.com" for n in range(1, 5)]
    for demo_user in users:
        assert demo_user.is_email_verified and not demo_user.is_admin
        assert len(demo_user.display_name.split()) == 2
        assert 2 <= len(demo_user.skills) <= 5
        assert demo_user.created_at < now_utc() - timedelta(days=30)
    # The printed credentials work.
    login = client.post(
        "/api/login/", json={"email": "demo-1@example.com", "password": DEMO_PASSWORD}
    )
    assert login.status_code == 200
    assert result.stdout.startswith("seeded 20 job(s)")
    assert "demo-1@example.com" in result.stderr  # how to sign in: a note


def test_seed_covers_every_status_and_kind_with_consistent_rows(runner):
    seed(runner, "--users", "6", "--jobs", "400", "--seed", "11")
    jobs = demo_jobs()
    assert len(jobs) == 400
    assert {job.status for job in jobs} == {s.value for s in JobStatus}
    assert {job.kind for job in jobs} == set(KINDS)
    now = now_utc()
    for job in jobs:
        assert job.name and job.created_at <= now
        assert 1 <= job.max_attempts <= 10
        assert 0 <= job.attempts <= job.max_attempts
        if job.status in (JobStatus.COMPLETED, JobStatus.FAILED):
            assert job.created_at <= job.scheduled_time <= job.started_at < job.finished_at <= now
            assert job.result is not None
            assert job.result.completed_at == job.finished_at
            assert job.attempts >= 1
        if job.status == JobStatus.COMPLETED:
            assert job.result.output is not None and job.result.error_message is None
        if job.status == JobStatus.FAILED:
            assert job.last_error and job.result.error_message == job.last_error
            assert job.attempts == job.max_attempts
        if job.status == JobStatus.PENDING:
            assert job.scheduled_time > job.created_at and job.finished_at is None
            assert job.kind != "report"  # nothing queued by the seeder emails anybody
        if job.status == JobStatus.IN_PROGRESS:
            assert job.started_at is not None and job.finished_at is None
        if job.status == JobStatus.CANCELLED:
            assert job.finished_at is not None and job.result is None


def test_seeded_outputs_are_what_the_processors_return(runner):
    from workers.processors import JobRun, get_processor

    seed(runner, "--users", "3", "--jobs", "150", "--seed", "5")
    for job in demo_jobs():
        if job.status != JobStatus.COMPLETED:
            continue
        if job.kind in ("echo", "wordcount", "checksum"):
            run = JobRun(
                job_id=job.id, owner_id=job.owner_id, kind=job.kind, attempt=1, max_attempts=3
            )
            assert job.result.output == get_processor(job.kind).run(job.params, run)
        elif job.kind == "sleep":
            assert job.result.output == {"slept": job.params["seconds"]}
            assert job.result.duration_ms >= job.params["seconds"] * 1000
        elif job.kind == "flaky":
            assert job.result.output == {"attempts": job.params["fail_times"] + 1}
            assert job.attempts == job.params["fail_times"] + 1
        elif job.kind == "report":
            assert job.result.output["emailed"] == job.owner.email


def test_seeded_params_pass_their_kinds_schema(runner):
    from workers.processors import get_processor

    seed(runner, "--users", "3", "--jobs", "120", "--seed", "8")
    for job in demo_jobs():
        get_processor(job.kind).load_params(job.params)  # raises on bad params


def test_seeded_bids_are_in_every_status_and_fit_their_jobs(runner):
    seed(runner, "--users", "6", "--jobs", "400", "--seed", "11")
    jobs = {job.id: job for job in demo_jobs()}
    bids = db.session.scalars(select(Bid).where(Bid.job_id.in_(list(jobs)))).all()
    assert {bid.status for bid in bids} == {s.value for s in BidStatus}
    accepted_per_job: dict[int, int] = {}
    for bid in bids:
        job = jobs[bid.job_id]
        assert bid.bidder_id != job.owner_id
        assert bid.fee > 0 and bid.fee.as_tuple().exponent == -2
        assert bid.proposed_deadline > bid.created_at.date()
        assert bid.created_at >= job.created_at
        if bid.status == BidStatus.ACCEPTED:
            accepted_per_job[job.id] = accepted_per_job.get(job.id, 0) + 1
            assert job.assignee_id == bid.bidder_id
        if bid.status == BidStatus.PENDING:
            assert job.status in (JobStatus.PENDING, JobStatus.IN_PROGRESS)
            assert job.assignee_id is None
    assert set(accepted_per_job.values()) == {1}
    assigned = {job.id for job in jobs.values() if job.assignee_id is not None}
    assert assigned == set(accepted_per_job)


def test_pending_and_in_progress_jobs_are_really_queued(runner):
    seed(runner, "--users", "3", "--jobs", "200", "--seed", "2")
    unfinished = [
        job for job in demo_jobs() if job.status in (JobStatus.PENDING, JobStatus.IN_PROGRESS)
    ]
    assert unfinished
    entries = {
        row.id: row
        for row in db.session.execute(
            text(
                "SELECT id, queue_name, task_name, status, scheduled_at, args "
                "FROM procrastinate_jobs"
            )
        )
    }
    for job in unfinished:
        entry = entries[job.queue_job_id]
        assert (entry.queue_name, entry.task_name, entry.status) == ("jobs", "process_job", "todo")
        marks = entry_marks(job.kind)  # a long kind's mark, a non-blocking kind's
        assert entry.args == {"job_id": job.id, "owner_id": job.owner_id, **marks}
        if job.status == JobStatus.PENDING:
            assert entry.scheduled_at == job.scheduled_time
        else:
            assert entry.scheduled_at is None
    finished = [job for job in demo_jobs() if job.queue_job_id is None]
    assert len(finished) + len(unfinished) == 200
    assert len(entries) == len(unfinished)


def test_seed_twice_reuses_users_and_only_tops_jobs_up(runner):
    seed(runner, "--users", "3", "--jobs", "30")
    users_before = db.session.scalars(select(User.id).where(User.email.like("demo-%"))).all()
    again = seed(runner, "--users", "3", "--jobs", "30")
    assert len(demo_jobs()) == 30
    assert "0 created, 3 reused" in again.stderr
    assert db.session.scalars(select(User.id).where(User.email.like("demo-%"))).all() == (
        users_before
    )
    more = seed(runner, "--users", "4", "--jobs", "45", "--json")
    assert len(demo_jobs()) == 45
    assert "1 created, 3 reused" in more.stderr
    done = json.loads(more.stdout)
    assert (done["users_created"], done["users_reused"], done["jobs_existing"]) == (1, 3, 30)
    assert done["jobs_created"] == 15 == sum(done["jobs_created_by_status"].values())


def test_seed_leaves_other_users_alone(runner, verified_user):
    seed(runner, "--users", "2", "--jobs", "10")
    db.session.expire_all()
    assert (
        db.session.scalar(
            select(func.count()).select_from(Job).where(Job.owner_id == verified_user.id)
        )
        == 0
    )


def test_dashboard_of_a_demo_user_matches_the_rows(runner, client):
    seed(runner, "--users", "3", "--jobs", "90", "--seed", "4")
    demo = user_by_email("demo-1@example.com")
    login = client.post(
        "/api/login/", json={"email": demo.email, "password": DEMO_PASSWORD}
    ).get_json()
    body = client.get(
        "/api/dashboard/", headers={"Authorization": f"Bearer {login['access_token']}"}
    ).get_json()
    owned = [job for job in demo_jobs() if job.owner_id == demo.id]
    assert body["jobs"]["total"] == len(owned)
    for status in JobStatus:
        assert body["jobs"][status.value] == sum(job.status == status for job in owned)
    assert sum(body["bids"].values()) == db.session.scalar(
        select(func.count()).select_from(Bid).where(Bid.bidder_id == demo.id)
    )


def test_seed_zero_jobs_creates_only_users(runner):
    seed(runner, "--users", "2", "--jobs", "0")
    assert demo_jobs() == []
    assert user_by_email("demo-2@example.com") is not None


@pytest.mark.parametrize(
    "args",
    [
        ["--users", "1"],
        ["--users", "0"],
        ["--users", "abc"],
        ["--jobs", "-1"],
        ["--jobs", "1.5"],
        ["--seed", "x"],
        ["--password", "short"],
        ["--unknown"],
    ],
)
def test_seed_refuses_bad_options(runner, args):
    result = runner.invoke(args=["demo", "seed", *args])
    assert result.exit_code == 2, result.output
    assert "Error" in result.output
    assert demo_jobs() == []


def test_seed_results_have_durations(runner):
    seed(runner, "--users", "2", "--jobs", "30", "--seed", "9")
    durations = db.session.scalars(select(JobResult.duration_ms)).all()
    assert durations and all(duration >= 0 for duration in durations)


@pytest.fixture
def production_app(app):
    app.config["APP_ENV"] = "production"
    yield app
    app.config["APP_ENV"] = "testing"


def test_seed_asks_before_touching_production(production_app, runner):
    refused = runner.invoke(args=["demo", "seed", "--users", "2", "--jobs", "5"], input="n\n")
    assert refused.exit_code == 1
    assert "production" in refused.output
    assert demo_jobs() == []
    confirmed = runner.invoke(args=["demo", "seed", "--users", "2", "--jobs", "5", "--yes"])
    assert confirmed.exit_code == 0, confirmed.output
    assert len(demo_jobs()) == 5


# --- through a real shell -----------------------------------------------------------------------


def test_a_real_flask_pipes_json_to_a_script_and_says_nothing_else(fresh_database, smtp_server):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "FLASK_APP": "wsgi",
        "APP_ENV": "testing",
        "DATABASE_URL": fresh_database,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(smtp_server.port),
    }

    def shell(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["bash", "-o", "pipefail", "-c", command],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    seeded = shell("flask demo seed --users 2 --jobs 7 --seed 1 --json")
    assert seeded.returncode == 0, seeded.stderr
    assert json.loads(seeded.stdout)["jobs_created"] == 7
    listed = shell(
        "flask jobs list --json | python -c 'import json, sys; print(len(json.load(sys.stdin)))'"
    )
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout == "7\n"
    assert listed.stderr == ""  # no library chatter
    failed = shell("flask jobs list --status failed | grep -c failed || true")
    assert failed.stdout.strip() == str(
        sum(job["status"] == "failed" for job in json.loads(shell("flask jobs list --json").stdout))
    )
    helped = shell("flask --help")
    assert helped.returncode == 0 and helped.stderr == ""
    missing = shell("flask jobs retry 999999")
    assert missing.returncode == 1
    assert (missing.stdout, missing.stderr) == ("", "Error: Job 999999 not found.\n")

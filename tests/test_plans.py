"""Plans and quotas: GET /api/me/plan/, each quota at its edge, the CLI, and the
periodic task that reminds subscribers and ends subscriptions (time passed in)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import event, func, select, text

from jobboard import quotas
from jobboard.extensions import db
from jobboard.models import FREE_PLAN, Bid, Job, JobStatus, Plan, User, now_utc
from jobboard.quotas import json_size, seconds_to_next_utc_day
from tests.support.bids import bid_payload
from tests.support.events import queued_event_emails
from tests.support.factories import JobFactory, PlanFactory
from tests.support.jobs import in_future, payload
from workers.plans import process_plan_subscriptions


def on_plan(user: User, plan: Plan, ends: datetime | None = None) -> User:
    user.plan_name = plan.name
    user.plan_ends_at = ends
    db.session.commit()
    return user


def post_job(client, headers, **overrides):
    return client.post("/api/jobs/", json=payload(**overrides), headers=headers)


def queued_emails() -> list[tuple[str, str]]:
    return [(email.to, email.subject) for email in queued_event_emails()]


# --- the shipped plans and GET /api/me/plan/ ------------------------------------------------


def test_the_migration_seeds_free_and_pro_with_the_shipped_limits(app):
    plans = {plan.name: plan for plan in db.session.scalars(select(Plan))}
    limits = lambda p: (  # noqa: E731
        p.max_running_jobs,
        p.max_open_jobs,
        p.jobs_per_day,
        p.max_params_bytes,
        p.bids_per_day,
    )
    assert limits(plans["free"]) == (2, 100, 1_000, 65_536, 50)
    assert limits(plans["pro"]) == (8, 10_000, 100_000, 524_288, 1_000)


def test_a_registered_user_is_on_free(client):
    response = client.post(
        "/api/register/", json={"email": "newbie@example.com", "password": "a good password"}
    )
    assert response.status_code == 201
    user = db.session.scalars(select(User).where(User.email == "newbie@example.com")).one()
    assert user.plan_name == FREE_PLAN and user.plan_ends_at is None


def test_my_plan_shows_the_limits_the_live_usage_and_no_end_on_free(
    client, verified_user, other_user, auth_headers
):
    headers = auth_headers(verified_user)
    for _ in range(3):
        assert post_job(client, headers).status_code == 201
    running = JobFactory(owner=verified_user, status=JobStatus.IN_PROGRESS)
    JobFactory(owner=verified_user, status=JobStatus.COMPLETED)
    theirs = JobFactory(owner=other_user)
    assert (
        client.post(f"/api/jobs/{theirs.id}/bids/", json=bid_payload(), headers=headers).status_code
        == 201
    )

    response = client.get("/api/me/plan/", headers=headers)

    assert response.status_code == 200
    body = response.get_json()
    assert body["plan"] == {
        "name": "free",
        "max_running_jobs": 2,
        "max_open_jobs": 100,
        "jobs_per_day": 1000,
        "max_params_bytes": 65536,
        "bids_per_day": 50,
        "max_webhook_endpoints": 1,
    }
    assert body["usage"] == {"running_jobs": 1, "open_jobs": 4, "jobs_today": 5, "bids_today": 1}
    assert body["renews_at"] is None
    assert running.status == JobStatus.IN_PROGRESS


def test_my_plan_shows_when_a_subscription_ends(client, verified_user, auth_headers):
    ends = datetime(2031, 5, 1, 12, 0, tzinfo=UTC)
    on_plan(verified_user, db.session.get(Plan, "pro"), ends)
    body = client.get("/api/me/plan/", headers=auth_headers(verified_user)).get_json()
    assert body["plan"]["name"] == "pro" and body["plan"]["max_running_jobs"] == 8
    assert datetime.fromisoformat(body["renews_at"]) == ends


def test_my_plan_needs_a_verified_user(client, user, auth_headers):
    assert client.get("/api/me/plan/").status_code == 401
    assert client.get("/api/me/plan/", headers=auth_headers(user)).status_code == 403


# --- quotas on jobs --------------------------------------------------------------------------


def test_params_of_exactly_max_params_bytes_pass_and_one_more_is_422(
    client, verified_user, auth_headers
):
    headers = auth_headers(verified_user)
    limit = db.session.get(Plan, "free").max_params_bytes
    filler = "x" * (limit - json_size({"text": ""}))
    assert json_size({"text": filler}) == limit

    assert post_job(client, headers, params={"text": filler}).status_code == 201
    response = post_job(client, headers, params={"text": filler + "x"})

    assert response.status_code == 422
    body = response.get_json()
    assert "max_params_bytes" in body["message"] and str(limit) in body["message"]
    assert "params" in body["errors"]["json"]


def test_params_size_counts_utf8_bytes_not_characters(client, verified_user, auth_headers):
    on_plan(verified_user, PlanFactory(name="tiny-params", max_params_bytes=20))
    headers = auth_headers(verified_user)
    assert json_size({"t": "éééé"}) == len(json.dumps({"t": "éééé"}, ensure_ascii=False)) + 4 - 1
    assert post_job(client, headers, params={"t": "é" * 6}).status_code == 201  # 20 bytes
    assert post_job(client, headers, params={"t": "é" * 7}).status_code == 422  # 22 bytes


def test_job_lists_carry_at_most_max_params_bytes_per_job(client, verified_user, auth_headers):
    on_plan(verified_user, PlanFactory(name="small-params", max_params_bytes=64))
    headers = auth_headers(verified_user)
    for size in (10, 30, 50):
        assert post_job(client, headers, params={"t": "y" * size}).status_code == 201
    assert post_job(client, headers, params={"t": "y" * 60}).status_code == 422
    jobs = client.get("/api/jobs/?page_size=100", headers=headers).get_json()
    assert len(jobs) == 3
    assert all(json_size(job["params"]) <= 64 for job in jobs)


def test_max_open_jobs_at_the_edge_is_429_with_retry_after_naming_the_limit(
    client, verified_user, auth_headers
):
    on_plan(verified_user, PlanFactory(name="three-open", max_open_jobs=3))
    headers = auth_headers(verified_user)
    created = [post_job(client, headers).get_json() for _ in range(3)]
    assert all("id" in job for job in created)

    refused = post_job(client, headers)

    assert refused.status_code == 429
    assert "max_open_jobs" in refused.get_json()["message"]
    assert "3" in refused.get_json()["message"]
    assert int(refused.headers["Retry-After"]) > 0
    assert db.session.scalar(select(func.count()).select_from(Job)) == 3
    # A finished or cancelled job is not open: one cancel makes room for exactly one.
    assert client.delete(f"/api/jobs/{created[0]['id']}/", headers=headers).status_code == 200
    assert post_job(client, headers).status_code == 201
    assert post_job(client, headers).status_code == 429


def test_in_progress_jobs_count_as_open(client, verified_user, auth_headers):
    on_plan(verified_user, PlanFactory(name="two-open", max_open_jobs=2))
    JobFactory(owner=verified_user, status=JobStatus.IN_PROGRESS)
    JobFactory(owner=verified_user, status=JobStatus.COMPLETED)
    headers = auth_headers(verified_user)
    assert post_job(client, headers).status_code == 201
    assert post_job(client, headers).status_code == 429


def test_jobs_per_day_at_the_edge_is_429_until_the_next_utc_day(
    client, verified_user, auth_headers
):
    on_plan(verified_user, PlanFactory(name="two-a-day", jobs_per_day=2))
    # Yesterday's jobs do not count.
    JobFactory(
        owner=verified_user, status=JobStatus.COMPLETED, created_at=now_utc() - timedelta(days=1)
    )
    headers = auth_headers(verified_user)
    assert post_job(client, headers).status_code == 201
    assert post_job(client, headers).status_code == 201

    refused = post_job(client, headers)

    assert refused.status_code == 429
    assert "jobs_per_day" in refused.get_json()["message"]
    expected = seconds_to_next_utc_day(now_utc())
    assert abs(int(refused.headers["Retry-After"]) - expected) <= 5


def test_seconds_to_next_utc_day():
    assert seconds_to_next_utc_day(datetime(2026, 1, 1, 23, 59, 30, tzinfo=UTC)) == 30
    assert seconds_to_next_utc_day(datetime(2026, 1, 1, 0, 0, 0, tzinfo=UTC)) == 86400
    assert seconds_to_next_utc_day(datetime(2026, 1, 1, 23, 59, 59, 500000, tzinfo=UTC)) == 1


def test_a_quota_refusal_creates_no_job_and_no_queue_entry(client, verified_user, auth_headers):
    on_plan(verified_user, PlanFactory(name="one-open", max_open_jobs=1))
    headers = auth_headers(verified_user)
    assert post_job(client, headers).status_code == 201
    assert post_job(client, headers).status_code == 429
    entries = db.session.scalar(
        text("SELECT count(*) FROM procrastinate_jobs WHERE task_name = 'process_job'")
    )
    assert entries == 1


def test_with_both_job_quotas_reached_the_refusal_names_max_open_jobs_first(
    client, verified_user, auth_headers
):
    on_plan(verified_user, PlanFactory(name="one-of-each", max_open_jobs=1, jobs_per_day=1))
    headers = auth_headers(verified_user)
    created = post_job(client, headers).get_json()

    both = post_job(client, headers)
    assert both.status_code == 429 and "max_open_jobs" in both.get_json()["message"]
    assert client.delete(f"/api/jobs/{created['id']}/", headers=headers).status_code == 200
    daily = post_job(client, headers)
    assert daily.status_code == 429 and "jobs_per_day" in daily.get_json()["message"]
    assert abs(int(daily.headers["Retry-After"]) - seconds_to_next_utc_day(now_utc())) <= 5


def test_params_over_the_plan_are_422_even_over_a_quota(client, verified_user, auth_headers):
    on_plan(verified_user, PlanFactory(name="one-small", max_open_jobs=1, max_params_bytes=20))
    headers = auth_headers(verified_user)
    assert post_job(client, headers, params={}).status_code == 201

    response = post_job(client, headers, params={"text": "x" * 20})

    assert response.status_code == 422
    assert "max_params_bytes" in response.get_json()["message"]


def test_manual_jobs_count_against_the_quotas_and_get_no_queue_entry(
    client, verified_user, auth_headers
):
    on_plan(verified_user, PlanFactory(name="two-manual", max_open_jobs=2))
    headers = auth_headers(verified_user)
    for _ in range(2):
        created = post_job(client, headers, kind="manual", params={"brief": "b"})
        assert created.status_code == 201
        assert db.session.get(Job, created.get_json()["id"]).queue_job_id is None
    assert post_job(client, headers, kind="manual", params={"brief": "b"}).status_code == 429
    assert db.session.scalar(text("SELECT count(*) FROM procrastinate_jobs")) == 0


def test_the_token_lookups_lock_serves_the_quota_checks_of_its_own_transaction_only(
    app, verified_user, other_user
):
    """The lock taken with the token lookup (`with_user_locked`) spares `plan_for_update`
    its statement in the same transaction, for the same user; after a commit the lock is
    gone and the plan is locked and read again."""
    executed: list[str] = []

    def record(_conn, _cursor, statement, *_args) -> None:
        if not statement.startswith(("SAVEPOINT", "RELEASE")):  # the test's transaction
            executed.append(statement)

    user_id, other_id = verified_user.id, other_user.id
    user, plan = db.session.execute(
        quotas.with_user_locked(select(User).where(User.id == user_id))
    ).one()
    quotas.held_lock(user, plan)
    event.listen(db.engine, "before_cursor_execute", record)
    try:
        assert quotas.plan_for_update(user_id) is plan
        assert executed == []
        assert quotas.plan_for_update(other_id).name == FREE_PLAN
        assert len(executed) == 1 and "FOR NO KEY UPDATE OF users" in executed[0]
        db.session.commit()
        assert quotas.plan_for_update(user_id).name == FREE_PLAN
        assert len(executed) == 2 and "FOR NO KEY UPDATE OF users" in executed[1]
    finally:
        event.remove(db.engine, "before_cursor_execute", record)


# --- quota on bids ---------------------------------------------------------------------------


def test_bids_per_day_at_the_edge_is_429(client, verified_user, other_user, auth_headers):
    on_plan(verified_user, PlanFactory(name="two-bids", bids_per_day=2))
    headers = auth_headers(verified_user)
    jobs = [JobFactory(owner=other_user) for _ in range(3)]
    old = JobFactory(owner=other_user)
    db.session.add(
        Bid(
            job_id=old.id,
            bidder_id=verified_user.id,
            proposed_deadline=in_future(86400 * 5).date(),
            fee=10,
            status="withdrawn",
            created_at=now_utc() - timedelta(days=1),
        )
    )
    db.session.commit()
    place = lambda job: client.post(  # noqa: E731
        f"/api/jobs/{job.id}/bids/", json=bid_payload(), headers=headers
    )
    assert place(jobs[0]).status_code == 201
    assert place(jobs[1]).status_code == 201

    refused = place(jobs[2])

    assert refused.status_code == 429
    assert "bids_per_day" in refused.get_json()["message"]
    assert int(refused.headers["Retry-After"]) >= 1
    # Withdrawing does not give the bid back: the quota counts bids placed.
    bid_id = db.session.scalars(select(Bid.id).where(Bid.job_id == jobs[0].id)).one()
    client.delete(f"/api/jobs/{jobs[0].id}/bids/{bid_id}/", headers=headers)
    assert place(jobs[2]).status_code == 429


def test_a_bid_refused_for_another_reason_is_not_reported_as_a_quota(
    client, verified_user, auth_headers
):
    on_plan(verified_user, PlanFactory(name="no-bids", bids_per_day=0))
    own = JobFactory(owner=verified_user)
    response = client.post(
        f"/api/jobs/{own.id}/bids/", json=bid_payload(), headers=auth_headers(verified_user)
    )
    assert response.status_code == 403
    assert client.post(
        "/api/jobs/999999/bids/", json=bid_payload(), headers=auth_headers(verified_user)
    ).status_code in (404,)


# --- the OpenAPI document ------------------------------------------------------------------


def test_openapi_documents_the_quota_answers(client):
    spec = client.get("/api/openapi.json").get_json()
    create = spec["paths"]["/api/jobs/"]["post"]["responses"]
    assert "429" in create and "Retry-After" in create["429"].get("headers", {})
    assert "422" in create
    bid = spec["paths"]["/api/jobs/{job_id}/bids/"]["post"]["responses"]
    assert "429" in bid
    assert "/api/me/plan/" in spec["paths"]


# --- flask plans ---------------------------------------------------------------------------


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


def test_plans_list_shows_every_plan_with_its_limits(runner):
    result = runner.invoke(args=["plans", "list"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "max_running_jobs" in lines[0]
    free = next(line for line in lines if line.split()[0] == "free").split()
    assert free == ["free", "2", "100", "1000", "65536", "50"]
    assert any(line.split()[0] == "pro" for line in lines)
    plans = json.loads(runner.invoke(args=["plans", "list", "--json"]).stdout)
    assert {
        "name": "free",
        "max_running_jobs": 2,
        "max_open_jobs": 100,
        "jobs_per_day": 1000,
        "max_params_bytes": 65536,
        "bids_per_day": 50,
    } in plans


def test_plans_create_adds_a_plan_and_refuses_a_duplicate_or_a_zero_limit(runner):
    args = [
        "plans",
        "create",
        "team",
        "--max-running-jobs",
        "4",
        "--max-open-jobs",
        "500",
        "--jobs-per-day",
        "5000",
        "--max-params-bytes",
        "131072",
        "--bids-per-day",
        "200",
    ]
    result = runner.invoke(args=args)
    assert result.exit_code == 0, result.output
    team = db.session.get(Plan, "team")
    assert (team.max_running_jobs, team.max_open_jobs, team.jobs_per_day) == (4, 500, 5000)
    assert (team.max_params_bytes, team.bids_per_day) == (131072, 200)
    assert result.stdout.splitlines()[1].split() == ["team", "4", "500", "5000", "131072", "200"]

    again = runner.invoke(args=args)
    assert again.exit_code == 1 and "already exists" in again.stderr
    zero = runner.invoke(args=[*args[:2], "zero", *args[3:4], "0", *args[5:]])
    # A refusal about one option names it (click's usage error, status 2).
    assert zero.exit_code == 2
    assert "Invalid value for '--max-running-jobs'" in zero.stderr
    assert "max_running_jobs must be at least 1" in zero.stderr
    assert db.session.get(Plan, "zero") is None
    missing = runner.invoke(args=["plans", "create", "half", "--max-running-jobs", "1"])
    assert missing.exit_code == 2


def test_plans_assign_subscribes_until_a_date_and_back_to_free(runner, verified_user):
    result = runner.invoke(
        args=["plans", "assign", verified_user.email.upper(), "pro", "--until", "2031-01-31"]
    )
    assert result.exit_code == 0, result.output
    db.session.expire_all()
    user = db.session.get(User, verified_user.id)
    assert user.plan_name == "pro"
    assert user.plan_ends_at == datetime(2031, 1, 31, 23, 59, 59, tzinfo=UTC)
    assert "is on plan pro" in result.stdout

    back = runner.invoke(args=["plans", "assign", verified_user.email, "free", "--json"])
    assert back.exit_code == 0, back.output
    db.session.expire_all()
    user = db.session.get(User, verified_user.id)
    assert user.plan_name == "free" and user.plan_ends_at is None
    assert json.loads(back.stdout) == {
        "user_id": user.id,
        "email": user.email,
        "plan": "free",
        "plan_ends_at": None,
    }


def test_plans_assign_refuses_unknown_users_plans_and_a_paid_plan_without_an_end(
    runner, verified_user
):
    unknown_user = runner.invoke(args=["plans", "assign", "nobody@example.com", "pro"])
    assert unknown_user.exit_code == 1 and "No user" in unknown_user.stderr
    unknown_plan = runner.invoke(args=["plans", "assign", verified_user.email, "gold"])
    assert unknown_plan.exit_code == 1 and "No plan" in unknown_plan.stderr
    # Without an end, or with one in the past, the message names the option to use.
    no_end = runner.invoke(args=["plans", "assign", verified_user.email, "pro"])
    assert no_end.exit_code == 2 and "end date" in no_end.stderr
    assert "Invalid value for '--until'" in no_end.stderr
    past = runner.invoke(
        args=["plans", "assign", verified_user.email, "pro", "--until", "2001-01-01"]
    )
    assert past.exit_code == 2 and "'--until'" in past.stderr
    assert no_end.stdout == past.stdout == ""
    bad_date = runner.invoke(
        args=["plans", "assign", verified_user.email, "pro", "--until", "soon"]
    )
    assert bad_date.exit_code == 2
    db.session.expire_all()
    assert db.session.get(User, verified_user.id).plan_name == "free"


def test_assigning_a_plan_updates_the_queues_running_limit(runner, verified_user):
    db.session.execute(text("SELECT jobboard_refresh_queue_owner(:id)"), {"id": verified_user.id})
    limit = "SELECT max_running FROM queue_owners WHERE owner_id = :id"
    assert db.session.scalar(text(limit), {"id": verified_user.id}) == 2
    runner.invoke(args=["plans", "assign", verified_user.email, "pro", "--until", "2031-01-31"])
    assert db.session.scalar(text(limit), {"id": verified_user.id}) == 8


# --- the periodic task: reminders and the end of subscriptions ------------------------------


def test_the_periodic_task_reminds_once_three_days_before_and_ends_subscriptions(app, make_user):
    now = datetime(2030, 6, 10, 12, 0, tzinfo=UTC)
    pro = db.session.get(Plan, "pro")
    soon = on_plan(make_user(email="soon@example.com"), pro, now + timedelta(days=2, hours=23))
    later = on_plan(make_user(email="later@example.com"), pro, now + timedelta(days=3, hours=1))
    ended = on_plan(make_user(email="ended@example.com"), pro, now - timedelta(minutes=1))
    make_user(email="free@example.com")

    done = process_plan_subscriptions(int(now.timestamp()))

    assert done == {"reminded": 1, "ended": 1}
    emails = queued_emails()
    assert ("soon@example.com", f"Your jobboard pro plan ends on {soon.plan_ends_at:%Y-%m-%d}") in (
        emails
    )
    assert ("ended@example.com", "Your jobboard pro plan has ended") in emails
    assert {to for to, _ in emails} == {"soon@example.com", "ended@example.com"}
    db.session.expire_all()
    moved = db.session.get(User, ended.id)
    assert moved.plan_name == FREE_PLAN and moved.plan_ends_at is None
    assert db.session.get(User, later.id).plan_name == "pro"

    # A tick later: nobody is reminded twice; the next one in the window is.
    tick = now + timedelta(hours=2)
    assert process_plan_subscriptions(int(tick.timestamp())) == {"reminded": 1, "ended": 0}
    assert [to for to, _ in queued_emails()].count("soon@example.com") == 1
    assert [to for to, _ in queued_emails()].count("later@example.com") == 1

    # After the end: back to free, with its email.
    end = soon.plan_ends_at + timedelta(seconds=1)
    assert process_plan_subscriptions(int(end.timestamp())) == {"reminded": 0, "ended": 1}
    db.session.expire_all()
    assert db.session.get(User, soon.id).plan_name == FREE_PLAN
    assert ("soon@example.com", "Your jobboard pro plan has ended") in queued_emails()


def test_changed_params_are_held_to_the_owners_plan_too(app, verified_user):
    """`check_job_params` is the size rule alone, for changing a job's params."""
    from jobboard.errors import Unprocessable
    from jobboard.quotas import check_job_params

    on_plan(verified_user, PlanFactory(name="small-edit", max_params_bytes=16))
    check_job_params(verified_user.id, {"t": "x" * 8})  # 16 bytes
    with pytest.raises(Unprocessable, match="max_params_bytes"):
        check_job_params(verified_user.id, {"t": "x" * 9})

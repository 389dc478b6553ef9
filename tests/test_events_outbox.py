"""Building and writing events: each type's recipient and data, the 64 KiB rule, one
statement for many events (their deliveries, the endpoints' runs and the emails with
them), and that events and their change commit or roll back together."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import procrastinate
import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from config import PROJECT_ROOT
from jobboard import queue
from jobboard.events.outbox import (
    MAX_EVENT_BYTES,
    EventRow,
    build_event,
    parse_public_id,
    public_id,
    write_events,
)
from jobboard.extensions import db
from jobboard.models import Event, Job, JobResult, Plan, WebhookEndpoint
from tests.support.factories import BidFactory, JobFactory, ReviewFactory, UserFactory
from workers.app import DELIVER_WEBHOOKS_TASK, QUEUE_WEBHOOKS, webhook_endpoint_lock


@pytest.fixture
def parties(app):
    owner = UserFactory(display_name="Olga")
    bidder = UserFactory(display_name="Ada")
    job = JobFactory(owner=owner, kind="manual", params={"brief": "secret plans"})
    bid = BidFactory(job=job, bidder=bidder, comment="I can do it")
    return owner, bidder, job, bid


def test_each_type_goes_to_its_recipient_with_the_job_as_they_may_see_it(parties):
    owner, bidder, job, bid = parties
    placed = build_event("bid.placed", job=job, bid=bid)
    assert placed.user_id == owner.id and placed.emailed
    assert placed.data["job"]["params"] == {"brief": "secret plans"}  # the owner's view
    assert placed.data["bid"]["bidder"]["display_name"] == "Ada"
    rejected = build_event("bid.rejected", job=job, bid=bid)
    assert rejected.user_id == bidder.id
    assert "params" not in rejected.data["job"]  # a bidder sees the public job
    assert build_event("bid.withdrawn", job=job, bid=bid).user_id == owner.id
    job.assignee_id = bidder.id
    accepted = build_event("bid.accepted", job=job, bid=bid)
    assert accepted.user_id == bidder.id and "params" in accepted.data["job"]  # assignee
    assert build_event("job.due_soon", job=job, due_date=job.scheduled_time.date()).user_id == (
        bidder.id
    )
    assert build_event("job.overdue", job=job, due_date=job.scheduled_time.date()).user_id == (
        owner.id
    )
    by_owner = build_event("job.released", job=job, by="owner", assignee_id=bidder.id)
    by_assignee = build_event("job.released", job=job, by="assignee", assignee_id=bidder.id)
    assert (by_owner.user_id, by_assignee.user_id) == (bidder.id, owner.id)
    for name in ("job.retrying", "job.failed", "job.cancelled"):
        row = build_event(name, job=job)
        assert (row.user_id, row.emailed) == (owner.id, False)


def test_job_completed_says_by_whom_and_only_a_delivery_is_emailed(parties):
    owner, _bidder, job, _bid = parties
    result = JobResult(
        job_id=job.id, output={"n": 1}, completed_at=datetime.now(UTC), duration_ms=5
    )
    by_processor = build_event("job.completed", job=job, result=result, by="processor")
    by_assignee = build_event("job.completed", job=job, result=result, by="assignee")
    assert by_processor.user_id == owner.id
    assert (by_processor.emailed, by_assignee.emailed) == (False, True)
    assert by_processor.data["result"]["output"] == {"n": 1}


def test_review_plan_and_webhook_events(app):
    review = ReviewFactory(comment="Great")
    row = build_event("review.received", review=review, job=db.session.get(Job, review.job_id))
    assert row.user_id == review.reviewee_id and row.data["review"]["comment"] == "Great"
    user = UserFactory()
    plan = db.session.get(Plan, "pro")
    ending = build_event("plan.ending", user=user, plan=plan, ends_at=datetime.now(UTC))
    assert ending.user_id == user.id and ending.data["plan"]["max_webhook_endpoints"] == 10
    ended = build_event(
        "plan.ended", user=user, plan=db.session.get(Plan, "free"), previous_plan="pro"
    )
    assert ended.data == {"plan": ended.data["plan"], "previous_plan": "pro"}
    endpoint = WebhookEndpoint(
        id=5, user_id=user.id, url="https://x.example/", secret="s", enabled=False
    )
    disabled = build_event("webhook.disabled", endpoint=endpoint, reason="gone")
    assert disabled.user_id == user.id and disabled.emailed
    assert disabled.data["endpoint"]["id"] == 5 and "secret" not in disabled.data["endpoint"]
    test = build_event("webhook.test", endpoint=endpoint, message="hi")
    assert (test.endpoint_id, test.data) == (5, {"endpoint_id": 5, "message": "hi"})


def test_a_large_output_is_left_out_and_pointed_at(parties):
    _owner, _bidder, job, _bid = parties
    result = JobResult(
        job_id=job.id,
        output={"text": "x" * MAX_EVENT_BYTES},
        completed_at=datetime.now(UTC),
        duration_ms=5,
    )
    row = build_event("job.completed", job=job, result=result, by="processor")
    assert "output" not in row.data["result"]
    assert row.data["job"]["result_url"] == f"/api/jobs/{job.id}/result/"
    assert "params_omitted" not in row.data["job"]
    job.params = {"text": "y" * MAX_EVENT_BYTES}
    row = build_event("job.completed", job=job, result=result, by="processor")
    assert row.data["job"]["params_omitted"] is True and "params" not in row.data["job"]


def test_public_ids_sort_as_the_feed_and_read_back():
    assert parse_public_id(public_id(7, 99)) == (7, 99)
    assert public_id(1, 2**40) < public_id(2, 1)
    for bad in ("evt_", "evt_1_2", "evt_" + "0" * 31 + "_", "EVT_" + "0" * 32, "x" * 36):
        assert parse_public_id(bad) is None


def test_many_events_in_one_statement_with_their_deliveries_runs_and_emails(app):
    user = UserFactory()
    db.session.execute(text("UPDATE plans SET max_webhook_endpoints = 3"))
    endpoints = [
        WebhookEndpoint(user_id=user.id, url="http://127.0.0.1:9/", secret="s") for _ in range(2)
    ]
    db.session.add_all(endpoints)
    db.session.flush()
    rows = [EventRow("job.failed", user.id, {"job": {"id": n}}, emailed=n < 3) for n in range(500)]
    ids = write_events(rows)
    assert len(ids) == 500 and ids == sorted(ids)
    stored = db.session.execute(select(Event.id, Event.data).where(Event.id.in_(ids))).all()
    assert {row.id: row.data["job"]["id"] for row in stored} == {
        event_id: n for n, event_id in enumerate(ids)
    }
    deliveries = db.session.execute(text("SELECT count(*) FROM webhook_deliveries")).scalar()
    assert deliveries == 1000
    runs = db.session.execute(
        text(
            "SELECT queue_name, task_name, lock, queueing_lock, args FROM procrastinate_jobs"
            " WHERE queue_name = :queue ORDER BY id"
        ),
        {"queue": QUEUE_WEBHOOKS},
    ).all()
    assert [tuple(run) for run in runs] == [
        (
            QUEUE_WEBHOOKS,
            DELIVER_WEBHOOKS_TASK,
            webhook_endpoint_lock(endpoint.id),
            webhook_endpoint_lock(endpoint.id),
            {"endpoint_id": endpoint.id},
        )
        for endpoint in endpoints
    ]
    emails = (
        db.session.execute(
            text(
                "SELECT args FROM procrastinate_jobs WHERE task_name = 'send_event_email'"
                " ORDER BY id"
            )
        )
        .scalars()
        .all()
    )
    assert emails == [{"event_id": event_id} for event_id in ids[:3]]


def test_events_roll_back_with_their_change_and_their_failure_rolls_the_change_back(live_app):
    with live_app.app_context():
        user = UserFactory()
        job = JobFactory(owner=user)
        # A failure after the change and its event: neither stays.
        job.name = "renamed"
        write_events([build_event("job.cancelled", job=job)])
        db.session.rollback()
        assert db.session.get(Job, job.id).name != "renamed"
        assert db.session.scalar(select(Event.id)) is None
        # The event cannot be written (no such recipient): the change does not commit.
        job.name = "renamed again"
        with pytest.raises(IntegrityError):
            write_events([EventRow("job.cancelled", 2**31 - 1, {})])
        db.session.rollback()
        assert db.session.get(Job, job.id).name != "renamed again"
        # And both commit together.
        job.name = "done"
        write_events([build_event("job.cancelled", job=job)])
        db.session.commit()
        assert db.session.scalar(select(Event.type)) == "job.cancelled"


def test_the_endpoint_run_is_the_row_procrastinates_defer_writes(app):
    user = UserFactory()
    endpoint = WebhookEndpoint(user_id=user.id, url="http://127.0.0.1:9/", secret="s")
    db.session.add(endpoint)
    db.session.flush()
    db.session.execute(
        text("SELECT jobboard_wake_webhook_endpoint(:id, NULL)"), {"id": endpoint.id}
    )
    by_sql = db.session.execute(
        text("SELECT id FROM procrastinate_jobs WHERE queueing_lock = :lock"),
        {"lock": webhook_endpoint_lock(endpoint.id)},
    ).scalar_one()
    by_procrastinate = queue.defer(
        DELIVER_WEBHOOKS_TASK,
        queue=QUEUE_WEBHOOKS,
        lock=webhook_endpoint_lock(endpoint.id),
        queueing_lock="another",
        priority=0,
        endpoint_id=endpoint.id,
    )
    columns = "queue_name, task_name, priority, lock, args, status, scheduled_at, attempts"
    first, second = (
        db.session.execute(
            text(f"SELECT {columns} FROM procrastinate_jobs WHERE id = :id"), {"id": entry}
        ).one()
        for entry in (by_sql, by_procrastinate)
    )
    assert first == second
    # Waking it again, while it waits, writes nothing new; a later time never delays it,
    # an earlier one brings a later entry forward.
    db.session.execute(
        text("SELECT jobboard_wake_webhook_endpoint(:id, NULL)"), {"id": endpoint.id}
    )
    later = datetime.now(UTC) + timedelta(hours=1)
    db.session.execute(
        text("SELECT jobboard_wake_webhook_endpoint(:id, :at)"), {"id": endpoint.id, "at": later}
    )
    waiting = (
        db.session.execute(
            text("SELECT scheduled_at FROM procrastinate_jobs WHERE queueing_lock = :lock"),
            {"lock": webhook_endpoint_lock(endpoint.id)},
        )
        .scalars()
        .all()
    )
    assert waiting == [None]


def test_the_installed_procrastinate_keeps_the_queueing_lock_index_the_wake_relies_on():
    """jobboard_wake_webhook_endpoint inserts with ON CONFLICT on this partial index."""
    installed = (
        PROJECT_ROOT.__class__(procrastinate.__file__).parent / "sql" / "schema.sql"
    ).read_text()
    assert re.search(
        r"CREATE UNIQUE INDEX procrastinate_jobs_queueing_lock_idx_v1 ON procrastinate_jobs "
        r"\(queueing_lock\) WHERE status = 'todo';",
        installed,
    )
    migration = (PROJECT_ROOT / "migrations" / "sql" / "events_webhooks_0010.sql").read_text()
    assert f"VALUES ('{QUEUE_WEBHOOKS}', '{DELIVER_WEBHOOKS_TASK}', 0, lock_name" in migration
    assert "lock_name text := '" + webhook_endpoint_lock(0)[:-1] + "' || p_endpoint" in migration

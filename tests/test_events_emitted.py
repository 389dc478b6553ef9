"""Every type of the events catalogue is written by the change it names, to its recipient,
with the data that recipient may see; the rules around it (who is told of a release, the
email limit of bid notices, a refused change tells nobody). `EMITTED_BY` names, for each
type, the tests that see it written by its change; a new type needs one."""

from __future__ import annotations

import ast
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from jobboard.bids import service as bids
from jobboard.events.catalogue import CATALOGUE
from jobboard.extensions import db
from jobboard.jobs import transitions
from jobboard.models import BidStatus, JobStatus, Plan
from jobboard.notices import due_at, tell_overdue
from jobboard.plans.service import process_subscriptions
from tests.support.auth import bearer
from tests.support.events import (
    events,
    last_event_id,
    queued_event_emails,
    told,
    types_told,
)
from tests.support.factories import BidFactory, JobFactory, UserFactory

TESTS = Path(__file__).parent

EMITTED_BY = {
    "job.completed": [
        "test_events_wiring.py::test_delivering_a_job",
        "test_events_wiring.py::test_a_processor_completing_a_job",
        "test_events_wiring.py::test_the_workers_completion_on_its_own_connection",
        "test_events_emitted.py::test_job_completed_is_emailed_for_a_delivery_only",
    ],
    "job.retrying": [
        "test_events_wiring.py::test_a_failed_attempt",
        "test_events_emitted.py::test_an_interrupted_attempt_is_a_retry",
    ],
    "job.failed": ["test_events_wiring.py::test_a_failed_attempt"],
    "job.cancelled": [
        "test_events_wiring.py::test_cancelling_a_job",
        "test_events_emitted.py::test_a_refused_change_tells_nobody",
    ],
    "bid.placed": [
        "test_events_wiring.py::test_placing_a_bid",
        "test_events_emitted.py::test_bid_notices_are_emailed_once_an_hour_per_bidder_and_job",
    ],
    "bid.withdrawn": [
        "test_events_wiring.py::test_withdrawing_a_bid",
        "test_events_wiring.py::test_giving_a_job_back_withdraws_the_bid_too",
    ],
    "bid.accepted": [
        "test_events_wiring.py::test_accepting_a_bid_tells_the_winner_and_every_other_bidder"
    ],
    "bid.rejected": [
        "test_events_wiring.py::test_accepting_a_bid_tells_the_winner_and_every_other_bidder"
    ],
    "job.released": [
        "test_events_wiring.py::test_giving_a_job_back_withdraws_the_bid_too",
        "test_events_emitted.py::test_the_owner_taking_a_job_back_tells_the_assignee_only",
    ],
    "job.due_soon": [
        "test_events_wiring.py::test_a_deadline_reminder",
        "test_deadlines.py::test_the_reminder_reaches_the_assignee_while_the_job_is_due",
    ],
    "job.overdue": [
        "test_events_emitted.py::test_overdue_tells_the_owner_once",
        "test_deadlines.py::test_the_overdue_notice_reaches_the_owner_only_once_the_date_has_passed",
    ],
    "review.received": ["test_events_wiring.py::test_reviewing"],
    "plan.ending": ["test_events_emitted.py::test_plan_ending_and_ended"],
    "plan.ended": [
        "test_events_wiring.py::test_a_subscription_ending",
        "test_events_emitted.py::test_plan_ending_and_ended",
    ],
    "webhook.disabled": [
        "test_webhook_delivery.py::"
        "test_after_the_last_attempt_the_delivery_fails_and_a_long_failing_endpoint_is_disabled",
    ],
    "webhook.test": [
        "test_webhooks_api.py::test_the_test_call_reaches_that_endpoint_only_and_not_the_feed"
    ],
}


def _test_names(file_name: str) -> set[str]:
    tree = ast.parse((TESTS / file_name).read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


def test_every_type_has_a_test_that_sees_it_written_by_its_change():
    assert set(EMITTED_BY) == set(CATALOGUE)
    for type_name, tests in EMITTED_BY.items():
        for test in tests:
            file_name, name = test.split("::")
            assert name in _test_names(file_name), (type_name, test)


def test_job_completed_is_emailed_for_a_delivery_only(app):
    owner, doer = UserFactory(), UserFactory()
    queued = JobFactory(owner=owner, status=JobStatus.IN_PROGRESS, attempts=1)
    assert transitions.complete(queued.id, 1, {"n": 1}, 3)
    db.session.commit()
    by_processor = told("job.completed", to=owner)
    assert by_processor.data["by"] == "processor"
    assert by_processor.data["result"]["output"] == {"n": 1}
    assert by_processor.data["job"]["status"] == "completed"

    manual = JobFactory(owner=owner, kind="manual", status=JobStatus.IN_PROGRESS)
    BidFactory(job=manual, bidder=doer, status=BidStatus.ACCEPTED)
    before = last_event_id()
    transitions.deliver(doer, manual.id, {"text": "done"}, "A note.")
    delivered = told("job.completed", to=owner, after=before)
    assert (delivered.data["by"], delivered.data["result"]["note"]) == ("assignee", "A note.")
    assert [email.event_id for email in queued_event_emails("job.completed")] == [delivered.id]


def test_an_interrupted_attempt_is_a_retry(app):
    owner = UserFactory()
    job = JobFactory(owner=owner, status=JobStatus.IN_PROGRESS, attempts=1, max_attempts=3)
    attempt = transitions.start_attempt(job.id)
    db.session.commit()
    assert isinstance(attempt, transitions.Attempt) and attempt.attempt == 2
    retrying = told("job.retrying", to=owner)
    assert retrying.data["job"]["last_error"] == "worker stopped during attempt 1"


def test_the_owner_taking_a_job_back_tells_the_assignee_only(app):
    owner, doer = UserFactory(), UserFactory()
    job = JobFactory(owner=owner, kind="manual", status=JobStatus.IN_PROGRESS)
    BidFactory(job=job, bidder=doer, status=BidStatus.ACCEPTED)
    transitions.release(owner, job.id)
    assert types_told() == [("job.released", doer.id)]
    released = told("job.released", to=doer)
    assert released.data["by"] == "owner"
    assert "params" not in released.data["job"]  # no longer theirs: the public job
    (email,) = queued_event_emails("job.released")
    assert email.to == doer.email and "taken back" in email.subject


def test_bid_notices_are_emailed_once_an_hour_per_bidder_and_job(app):
    owner, doer = UserFactory(), UserFactory()
    job = JobFactory(owner=owner, kind="manual")
    other_job = JobFactory(owner=owner, kind="manual")
    terms = {"proposed_deadline": date.today() + timedelta(days=2), "currency": "USD"}
    first = bids.place_bid(job.id, doer, fee=Decimal("10.00"), **terms)
    bids.withdraw_bid(job.id, first.id, doer)
    bids.place_bid(job.id, doer, fee=Decimal("9.00"), **terms)
    bids.place_bid(other_job.id, doer, fee=Decimal("9.00"), **terms)
    placed = events("bid.placed", to=owner)
    assert len(placed) == 3  # every bid is in the feed and the webhooks
    emailed = [email.event_id for email in queued_event_emails("bid.placed")]
    assert emailed == [placed[0].id, placed[2].id]  # the mailbox hears of one per hour


def test_a_refused_change_tells_nobody(client, app):
    owner = UserFactory()
    job = JobFactory(owner=owner)
    headers = bearer(owner)
    stale = client.delete(f"/api/jobs/{job.id}/", headers={**headers, "If-Match": '"old"'})
    assert stale.status_code == 412
    assert events() == []
    etag = client.get(f"/api/jobs/{job.id}/", headers=headers).headers["ETag"]
    cancelled = client.delete(f"/api/jobs/{job.id}/", headers={**headers, "If-Match": etag})
    assert cancelled.status_code == 200
    assert types_told() == [("job.cancelled", owner.id)]
    assert client.delete(f"/api/jobs/{job.id}/", headers=headers).status_code == 409
    assert types_told() == [("job.cancelled", owner.id)]


def test_overdue_tells_the_owner_once(app):
    owner, doer = UserFactory(), UserFactory()
    due = date.today() - timedelta(days=2)
    job = JobFactory(
        owner=owner,
        kind="manual",
        status=JobStatus.IN_PROGRESS,
        due_date=due,
        overdue_queue_job_id=1,
    )
    BidFactory(job=job, bidder=doer, status=BidStatus.ACCEPTED)
    assert tell_overdue(job.id, due.isoformat(), now=due_at(due)) is True
    assert tell_overdue(job.id, due.isoformat(), now=due_at(due)) is False
    overdue = told("job.overdue", to=owner)
    assert overdue.data["due_date"] == due.isoformat()
    assert overdue.data["job"]["assignee_id"] == doer.id


def test_plan_ending_and_ended(app):
    now = datetime.now(UTC)
    pro = db.session.get(Plan, "pro")
    ending = UserFactory(plan_name=pro.name, plan_ends_at=now + timedelta(days=1))
    ended = UserFactory(plan_name=pro.name, plan_ends_at=now - timedelta(days=1))
    assert process_subscriptions(now) == {"reminded": 1, "ended": 1}
    reminder = told("plan.ending", to=ending)
    assert reminder.data["plan"]["name"] == "pro"
    assert reminder.data["ends_at"] == ending.plan_ends_at.isoformat()
    moved = told("plan.ended", to=ended)
    assert (moved.data["plan"]["name"], moved.data["previous_plan"]) == ("free", "pro")
    assert {email.to for email in queued_event_emails()} == {ending.email, ended.email}

"""The transitions of a job done by a person, and moving a pending job in time; one
function per transition, each under the job row's lock (FOR UPDATE), which the worker's
start of an attempt also takes (`jobboard.jobs.processing`): whoever locks first wins.

    pending --award--> in_progress (assignee set, queue entry cancelled)
    in_progress --deliver--> completed (the delivery is the result)
    in_progress --release--> pending (assignee cleared; a queued kind is queued again)
    pending --reschedule--> pending (fields changed; the queue entry moves)

Deadline notices (`jobboard.notices`) are scheduled on award and cancelled on delivery
and release, in the same transaction.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from flask import current_app
from marshmallow import ValidationError
from sqlalchemy import select

from jobboard import notices, queue, quotas
from jobboard.errors import Conflict, NotFound, Unprocessable
from jobboard.extensions import db
from jobboard.jobs.policy import is_party, other_party_id
from jobboard.jobs.service import runs_in_queue, schedule_job
from jobboard.models import Bid, BidStatus, Job, JobResult, JobStatus, User, now_utc
from workers.processors import get_processor


def _locked(job_id: int) -> Job | None:
    # A locked read must see the row as it is now, not a copy from earlier in the session.
    return db.session.scalar(
        select(Job)
        .where(Job.id == job_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )


def award(job: Job, bid: Bid) -> None:
    """Hand the job to the bidder of `bid`. The caller holds the job FOR UPDATE and
    commits. Only a pending job can be handed over: one the queue is running is 409."""
    if job.status != JobStatus.PENDING:
        raise Conflict(f"This job is {job.status}; only a pending job can be handed to a bidder.")
    if job.queue_job_id is not None:
        # False when a worker has just taken the entry: it waits for this row's lock, then
        # finds the job in progress with an assignee and leaves it alone.
        queue.cancel(job.queue_job_id)
        job.queue_job_id = None
    job.status = JobStatus.IN_PROGRESS
    job.assignee_id = bid.bidder_id
    job.started_at = now_utc()
    job.due_date = bid.proposed_deadline
    notices.schedule_deadline_notices(job)


def deliver(user: User, job_id: int, output: dict[str, Any], note: str | None) -> Job:
    """The assignee hands in the work: the job is completed and `output` (with `note`) is
    its result, stored like a processor's. 404 unless the caller is the assignee; 409
    unless the job is in progress."""
    job = _locked(job_id)
    if job is None or job.assignee_id is None or job.assignee_id != user.id:
        raise NotFound(f"Job {job_id} not found, or not assigned to you.")
    if job.status != JobStatus.IN_PROGRESS:
        raise Conflict(f"Job {job.id} is {job.status}; only a job in progress can be delivered.")
    limit = current_app.config["MAX_DELIVERY_OUTPUT_BYTES"]
    if len(json.dumps(output, separators=(",", ":")).encode()) > limit:
        raise Unprocessable(
            f"output is larger than {limit} bytes as JSON.",
            errors={"json": {"output": [f"Larger than {limit} bytes as JSON."]}},
        )
    finished = now_utc()
    job.status = JobStatus.COMPLETED
    job.finished_at = finished
    started = job.started_at or finished
    job.result = JobResult(
        job_id=job.id,
        output=output,
        error_message=None,
        completed_at=finished,
        duration_ms=max(0, round((finished - started).total_seconds() * 1000)),
        note=note,
    )
    notices.cancel_deadline_notices(job)
    notices.delivered(job, user, note)
    db.session.commit()
    return job


def release(user: User, job_id: int) -> Job:
    """The assignee gives the job back, or the owner takes it away: the accepted bid is
    withdrawn, the job pending and open for bids again, a queued kind queued again for
    its scheduled time (now, if that passed), and the other party emailed."""
    job = _locked(job_id)
    if job is None or not is_party(user, job):
        raise NotFound(f"Job {job_id} not found.")
    if job.status != JobStatus.IN_PROGRESS or job.assignee_id is None:
        raise Conflict(
            f"Job {job.id} is {job.status} and not handed to anybody; only a job in progress "
            "with an assignee can be released."
        )
    other_id = other_party_id(user, job)
    accepted = db.session.scalars(
        select(Bid)
        .where(Bid.job_id == job.id, Bid.status == BidStatus.ACCEPTED)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).all()
    for bid in accepted:
        bid.status = BidStatus.WITHDRAWN
    job.status = JobStatus.PENDING
    job.assignee_id = None
    job.started_at = None
    job.due_date = None
    notices.cancel_deadline_notices(job)
    if runs_in_queue(job.kind):
        schedule_job(job, job.scheduled_time if job.scheduled_time > now_utc() else None)
    if other_id is not None:
        notices.released(job, user, other_id)
    db.session.commit()
    return job


EDITABLE_FIELDS = ("name", "description", "scheduled_time", "priority", "params", "max_attempts")


def reschedule(user: User, job_id: int, changes: Mapping[str, Any]) -> Job:
    """The owner edits a pending, unassigned job. A new `scheduled_time` (null: now) or
    `priority` moves its queue entry in the same transaction: the old entry is cancelled
    (or, if a worker has just taken it, superseded: the attempt checks that it still owns
    the job) and a new one deferred, so the job never runs at the old time, nor twice."""
    job = _locked(job_id)
    if job is None or job.owner_id != user.id:
        raise NotFound(f"Job {job_id} not found.")
    if job.status != JobStatus.PENDING or job.assignee_id is not None:
        state = "assigned" if job.assignee_id is not None else job.status
        raise Conflict(f"Job {job.id} is {state}; only a pending, unassigned job can be edited.")
    values = dict(changes)
    if "params" in values:
        values["params"] = _params_for(job.kind, values["params"])
        quotas.check_job_params(job.owner_id, values["params"])
    if "max_attempts" in values and values["max_attempts"] <= job.attempts:
        raise Unprocessable(
            f"Job {job.id} has made {job.attempts} attempts already.",
            errors={"json": {"max_attempts": [f"Must be more than {job.attempts}."]}},
        )
    run_now = "scheduled_time" in values and values["scheduled_time"] is None
    if "scheduled_time" in values:
        values["scheduled_time"] = _future_or_now(values["scheduled_time"])
    moved = any(
        key in values and values[key] != getattr(job, key) for key in ("scheduled_time", "priority")
    )
    for key in EDITABLE_FIELDS:
        if key in values:
            setattr(job, key, values[key])
    if moved and runs_in_queue(job.kind):
        if job.queue_job_id is not None:
            queue.cancel(job.queue_job_id)
        schedule_job(job, None if run_now else job.scheduled_time)
    db.session.commit()
    return job


def _params_for(kind: str, params: Any) -> dict[str, Any]:
    processor = get_processor(kind)
    if processor is None:
        raise Unprocessable(f"Kind {kind!r} is not installed; its params cannot be checked.")
    try:
        return processor.load_params(params)
    except ValidationError as error:
        raise Unprocessable(
            "params do not fit the job's kind.", errors={"json": {"params": error.messages}}
        ) from error


def _future_or_now(when: datetime | None) -> datetime:
    if when is None:
        return now_utc()
    if when <= now_utc():
        raise Unprocessable(
            "scheduled_time must be in the future.",
            errors={"json": {"scheduled_time": ["Must be in the future."]}},
        )
    return when.astimezone(UTC)

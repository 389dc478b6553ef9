"""Jobs: creating them and queueing their attempts, and reading them. No request access
here; every change commits explicitly.

Every change of a job's status (cancel, retry, the attempt's outcomes, award, deliver,
release, reschedule) is in `jobboard.jobs.transitions`; who may see or act on a job is in
`jobboard.jobs.policy`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    cast,
    false,
    func,
    insert,
    literal,
    null,
    or_,
    select,
    true,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import InstrumentedAttribute, aliased

from jobboard import queue, quotas
from jobboard.errors import Conflict, NotFound, Unprocessable
from jobboard.extensions import api, db
from jobboard.jobs import policy
from jobboard.jobs.sorting import sorted_by
from jobboard.models import (
    IdempotencyKey,
    Job,
    JobResult,
    JobStatus,
    Plan,
    User,
    now_utc,
    zero_filled,
)
from workers.app import PROCESS_JOB_TASK, QUEUE_JOBS
from workers.processors import get_processor, processors


def job_lock(job_id: ColumnElement[int]) -> ColumnElement[str]:
    """Procrastinate lock and queueing lock of a job's attempts: one runs at a time, and at
    most one waits in the queue. SQL, for the job id may be drawn by the statement that
    defers the entry (`create_job`)."""
    return literal("job-") + cast(job_id, String)


# --- creating and scheduling -----------------------------------------------------------


def create_job(
    owner: User,
    data: Mapping[str, Any],
    idempotency_key: str | None = None,
    received_at: datetime | None = None,
) -> tuple[Job, bool]:
    """Create a job and queue its first attempt at `scheduled_time`, in one transaction.

    Returns `(job, created)`; `created` is False when `idempotency_key` was already used by
    this owner with the same body, and the job is the one that first request created.
    `scheduled_time` must be after `received_at`, the request's arrival (default now): the
    request may have waited for the owner's row lock since (routes.Jobs.post).
    """
    owner_id = owner.id
    fingerprint = request_fingerprint(data) if idempotency_key is not None else ""
    if idempotency_key is not None:
        replayed = _replayed_job(owner_id, idempotency_key, fingerprint)
        if replayed is not None:
            return replayed, False
    # Checked after the replay lookup: repeating a request whose time has passed since must
    # still return the job it created. No scheduled_time means now.
    run_now = data.get("scheduled_time") is None
    scheduled_time = future_or_now(data.get("scheduled_time"), received_at)
    # No statement when the request's token lookup took the lock (routes.Jobs.post).
    plan = quotas.plan_for_update(owner_id)
    quotas.check_params_size(plan, data["params"])
    job = _insert_within_quotas(
        plan,
        {
            "owner_id": owner_id,
            "name": data["name"],
            "description": data.get("description"),
            "kind": data["kind"],
            "params": data["params"],
            # In UTC, as the database returns it: the response renders this object as it is.
            "scheduled_time": scheduled_time,
            "priority": data["priority"],
            "max_attempts": data["max_attempts"],
        },
        # A manual job waits for a person, never for the queue.
        queued=runs_in_queue(data["kind"]),
        queue_at=None if run_now else scheduled_time,
    )

    if idempotency_key is not None:
        # ON CONFLICT DO NOTHING waits for a concurrent request holding the same key to
        # finish, so losing this race means the winner's job is committed and readable.
        claimed = db.session.scalar(
            pg_insert(IdempotencyKey)
            .values(user_id=owner_id, key=idempotency_key, request_hash=fingerprint, job_id=job.id)
            .on_conflict_do_nothing()
            .returning(IdempotencyKey.job_id)
        )
        if claimed is None:
            db.session.rollback()
            replayed = _replayed_job(owner_id, idempotency_key, fingerprint)
            if replayed is None:
                raise Conflict("A request with this Idempotency-Key is in progress; retry.")
            return replayed, False

    commit_as_written()
    return job, True


def _insert_within_quotas(
    plan: Plan, values: dict[str, Any], *, queued: bool, queue_at: datetime | None
) -> Job:
    """Insert a job with `values`, and when `queued` its queue entry for `queue_at` (None:
    now), unless the owner's quotas refuse it (429). One statement: it counts what the
    quotas limit (after the owner's row lock, `quotas.plan_for_update`, was granted),
    draws the job's id, defers the entry and inserts the job with the entry's id; without
    a job there is no entry."""
    now = now_utc()
    owner_id = values["owner_id"]
    reached = quotas.new_job_quotas_reached(owner_id, plan, now).cte("quotas_reached")
    drawn = (
        select(func.nextval(func.pg_get_serial_sequence(Job.__tablename__, Job.id.key)).label("id"))
        .where(quotas.new_job_allowed(reached))
        # Evaluated once (as PostgreSQL does with a volatile CTE anyway): the job and its
        # entry must get the same id.
        .cte("drawn")
        .prefix_with("MATERIALIZED")
    )
    queue_job_id = (
        queue_entry(drawn.c.id, owner_id, values["kind"], values["priority"], queue_at)
        if queued
        else null()
    )
    values = values | {
        "created_at": now,
        "updated_at": now,
        "status": JobStatus.PENDING,
        "attempts": 0,
    }
    columns = Job.__table__.c
    row = select(
        drawn.c.id,
        queue_job_id,
        *(literal(value, columns[key].type) for key, value in values.items()),
    )
    inserted = (
        insert(Job)
        .from_select(["id", "queue_job_id", *values], row)
        .returning(*columns)
        .cte("inserted")
    )
    outcome = db.session.execute(
        select(reached.c.max_open_jobs, reached.c.jobs_per_day, aliased(Job, inserted))
        .select_from(reached)
        .outerjoin(inserted, true())
    ).one()
    job = outcome[-1]
    if job is None:  # the same row says why: no second query, no second snapshot
        quotas.refuse_new_job(plan, outcome, now)
    return job


def commit_as_written() -> None:
    """Commit, keeping the objects as this transaction wrote them (every column is known:
    Python-side defaults, RETURNING id). The answer then shows what the request did,
    without reloading the row: a reload would cost a query and could show what a worker
    did a moment later (a retried or re-queued job already `in_progress`)."""
    session = db.session()
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = True


def future_or_now(when: datetime | None, received_at: datetime | None = None) -> datetime:
    """`when` in UTC (None: now); 422 for a time that is not in the future: not after
    `received_at` (the request's arrival; default now), so that a time still ahead when
    the request came in is not refused for the request's wait on a lock (create_job)."""
    if when is None:
        return now_utc()
    if when <= (received_at or now_utc()):
        raise Unprocessable(
            "scheduled_time must be in the future.",
            errors={"json": {"scheduled_time": ["Must be in the future."]}},
        )
    return when.astimezone(UTC)


def runs_in_queue(kind: str) -> bool:
    """False for a kind done by a person (`manual`), which is never deferred."""
    processor = get_processor(kind)
    return processor is None or processor.runs_in_queue


def schedule_job(job: Job, at: datetime | None = None) -> int:
    """Queue the job's next attempt for `at` (None: as soon as a worker is free) on the
    current transaction and remember the queue entry; the caller commits."""
    if job.id is None:
        db.session.flush()
    job.queue_job_id = db.session.scalar(
        select(queue_entry(literal(job.id), job.owner_id, job.kind, job.priority, at))
    )
    return job.queue_job_id


def queue_entry(
    job_id: ColumnElement[int], owner_id: int, kind: str, priority: int, at: datetime | None
) -> ColumnElement[int]:
    """SQL deferring an attempt of job `job_id` for `at`, whose value is the entry's id."""
    args: dict[str, Any] = {"job_id": job_id, "owner_id": owner_id}
    processor = get_processor(kind)
    if processor is not None and processor.long:
        # A long kind's entry takes one of a worker's long-job slots
        # (migrations/sql/long_job_slots_0009.sql); a short one's carries no mark.
        args["long"] = True
    return queue.deferral(
        PROCESS_JOB_TASK,
        queue=QUEUE_JOBS,
        schedule_at=at,
        lock=job_lock(job_id),
        queueing_lock=job_lock(job_id),
        priority=priority,
        # Whose entry it is: the queue's fetch applies the owner's running limit and orders
        # by `priority` only among the owner's own entries (migrations/sql/fair_queue_0004.sql).
        args=args,
    )


def request_fingerprint(data: Mapping[str, Any]) -> str:
    """The same for two requests that mean the same job (key order, timestamp offsets)."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _replayed_job(owner_id: int, key: str, fingerprint: str) -> Job | None:
    record = db.session.get(IdempotencyKey, (owner_id, key))
    if record is None:
        return None
    if record.request_hash != fingerprint:
        raise Unprocessable(
            "This Idempotency-Key was already used with a different request body.",
            errors={"headers": {"Idempotency-Key": ["Already used with a different body."]}},
        )
    return db.session.get(Job, record.job_id)


# --- reading -------------------------------------------------------------------------------


def get_visible_job(user: User, job_id: int) -> Job:
    """The job, for its owner, its assignee or an admin; 404 for anybody else."""
    job = db.session.get(Job, job_id)
    if job is None or not policy.can_see(user, job):
        raise NotFound(f"Job {job_id} not found.")
    return job


def get_result(user: User, job_id: int) -> JobResult:
    """The stored outcome of a completed job; 409 naming the status otherwise."""
    job = get_visible_job(user, job_id)
    if job.status != JobStatus.COMPLETED or job.result is None:
        detail = f" Last error: {job.last_error}" if job.status == JobStatus.FAILED else ""
        raise Conflict(f"Job {job.id} is {job.status}; only a completed job has a result.{detail}")
    return job.result


def owned_jobs_query(user: User, filters: Mapping[str, Any]) -> Select[tuple[Job]]:
    return _filtered(select(Job).where(Job.owner_id == user.id), filters)


def assigned_jobs_query(user: User, filters: Mapping[str, Any]) -> Select[tuple[Job]]:
    return _filtered(select(Job).where(Job.assignee_id == user.id), filters)


def open_jobs_query(user: User, filters: Mapping[str, Any]) -> Select[tuple[Job]]:
    """Other people's jobs that still take bids."""
    query = select(Job).where(policy.open_for_bids(), Job.owner_id != user.id)
    return _filtered(query, filters)


def _filtered(query: Select[tuple[Job]], filters: Mapping[str, Any]) -> Select[tuple[Job]]:
    statuses = filters.get("status")
    if statuses:
        query = query.where(Job.status.in_(statuses))
    elif statuses is not None:  # an explicitly empty list matches nothing
        query = query.where(false())
    if filters.get("kind"):
        query = query.where(Job.kind == filters["kind"])
    # Ranges are half-open: `*_after` is inclusive, `*_before` exclusive.
    if filters.get("scheduled_after") is not None:
        query = query.where(Job.scheduled_time >= filters["scheduled_after"])
    if filters.get("scheduled_before") is not None:
        query = query.where(Job.scheduled_time < filters["scheduled_before"])
    if filters.get("created_after") is not None:
        query = query.where(Job.created_at >= filters["created_after"])
    if filters.get("created_before") is not None:
        query = query.where(Job.created_at < filters["created_before"])
    if filters.get("q"):
        q = filters["q"]
        query = query.where(
            or_(
                Job.name.icontains(q, autoescape=True),
                Job.description.icontains(q, autoescape=True),
            )
        )
    return sorted_by(query, filters.get("sort"))


def job_counts_by_status(
    user_id: int, user_column: InstrumentedAttribute[int | None] = Job.owner_id
) -> dict[str, int]:
    """Every status with the number of jobs in it whose `user_column` (the owner by
    default, or the assignee) is `user_id`, zeros included. One GROUP BY answered from
    the (owner_id|assignee_id, status) index."""
    return job_counts(user_column == user_id)


def job_counts(*criteria: Any) -> dict[str, int]:
    """Every status with the number of jobs matching `criteria` in it, zeros included
    (every job: the operator's CLI)."""
    rows = db.session.execute(
        select(Job.status, func.count()).where(*criteria).group_by(Job.status)
    )
    return zero_filled(JobStatus, rows)


def jobs_for_operator(
    statuses: Iterable[str] | None = None, owner_email: str | None = None, limit: int = 100
) -> list[Job]:
    """Newest jobs first, for the CLI; raises NotFound for an unknown owner email."""
    query = select(Job).order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)
    if statuses:
        query = query.where(Job.status.in_(list(statuses)))
    if owner_email is not None:
        owner_id = db.session.scalar(
            select(User.id).where(func.lower(User.email) == owner_email.lower())
        )
        if owner_id is None:
            raise NotFound(f"No user with email {owner_email}.")
        query = query.where(Job.owner_id == owner_id)
    return list(db.session.scalars(query))


# --- job kinds ----------------------------------------------------------------------------


def kinds_catalogue() -> list[dict[str, Any]]:
    """Every installed kind with the JSON Schema of its params, generated from the kind's
    own marshmallow schema (the rules that `POST /api/jobs/` applies), so a client can
    build a form per kind without a rule of its own."""
    converter = api.ma_plugin.converter
    catalogue = []
    for kind, entry in sorted(processors().items()):
        catalogue.append(
            {
                "kind": kind,
                "description": entry.description,
                "runs_in_queue": entry.runs_in_queue,
                "time_limit": entry.time_limit,
                "long": entry.long,
                "params_schema": converter.schema2jsonschema(entry.schema),
            }
        )
    return catalogue

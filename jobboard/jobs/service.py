"""Jobs: creating them and queueing their attempts, and reading them. No request access
here; every change commits explicitly.

Every change of a job's status (cancel, retry, the attempt's outcomes, award, deliver,
release, reschedule) is in `jobboard.jobs.transitions`; who may see or act on a job is in
`jobboard.jobs.policy`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    Integer,
    Select,
    String,
    Text,
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
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, aggregate_order_by
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import InstrumentedAttribute, aliased

from jobboard import logs, queue, quotas
from jobboard.errors import Conflict, NotFound, Unprocessable
from jobboard.extensions import api, db
from jobboard.jobs import policy
from jobboard.jobs.sorting import sorted_by
from jobboard.models import (
    IdempotencyKey,
    Job,
    JobAttempt,
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


def create_jobs(
    owner: User,
    jobs: Sequence[Mapping[str, Any]],
    idempotency_key: str | None = None,
    received_at: datetime | None = None,
) -> tuple[list[Job], bool]:
    """Create several jobs (as `create_job` does each) and queue them, in one transaction
    and one statement: all of them or none. Returns `(jobs, created)` in the order given.

    The owner's quotas count the batch whole: it passes `max_open_jobs` or `jobs_per_day`
    as a whole (429) or fits. A job that `create_job` would refuse makes the batch a 422
    whose errors are keyed by the job's index (`errors.json.jobs.<i>.<field>`). With
    `idempotency_key`, the key is claimed by the same statement that inserts the jobs; a
    repeat with the same body returns the jobs the first request created (`created`
    False), a repeat racing the first waits for it."""
    owner_id = owner.id
    fingerprint = request_fingerprint({"jobs": list(jobs)}) if idempotency_key else ""
    # No statement when the request's token lookup took the lock (routes.JobBatch.post).
    plan = quotas.plan_for_update(owner_id)
    rows, errors = [], {}
    for index, data in enumerate(jobs):
        try:
            quotas.check_params_size(plan, data["params"])
            scheduled_time = future_or_now(data.get("scheduled_time"), received_at)
        except Unprocessable as error:
            errors[index] = (error.errors or {}).get("json", {"_schema": [error.message]})
            continue
        rows.append(
            {
                "name": data["name"],
                "description": data.get("description"),
                "kind": data["kind"],
                "params": json.dumps(data["params"]),
                "scheduled_time": scheduled_time,
                "priority": data["priority"],
                "max_attempts": data["max_attempts"],
                "queued": runs_in_queue(data["kind"]),
                "queue_at": None if data.get("scheduled_time") is None else scheduled_time,
                "marks": json.dumps(entry_marks(data["kind"])),
            }
        )
    if errors:
        replayed = _replayed_jobs(owner_id, idempotency_key, fingerprint)
        if replayed is not None:  # a repeat whose times have passed since the first
            return replayed, False
        raise Unprocessable(
            f"{len(errors)} of the {len(jobs)} jobs are invalid; nothing was created.",
            errors={"json": {"jobs": errors}},
        )
    now = now_utc()
    outcome = db.session.execute(
        _batch_insert(plan, owner_id, rows, now, idempotency_key, fingerprint)
    ).all()
    created = [row[-1] for row in outcome if row[-1] is not None]
    claimed = idempotency_key is None or (created and outcome[0].claimed)
    if created and claimed:
        commit_as_written()
        return created, True
    db.session.rollback()
    replayed = _replayed_jobs(owner_id, idempotency_key, fingerprint)
    if replayed is not None:
        return replayed, False
    if not created:
        quotas.refuse_new_job(plan, outcome[0], now, count=len(rows))
    raise Conflict("A request with this Idempotency-Key is in progress; retry.")


def _batch_insert(
    plan: Plan,
    owner_id: int,
    rows: list[dict[str, Any]],
    now: datetime,
    idempotency_key: str | None,
    fingerprint: str,
) -> Select[Any]:
    """One statement inserting `rows` as jobs with their queue entries, if the owner's
    quotas let the whole batch in, and claiming `idempotency_key` for them. Its rows:
    the quota columns of `quotas.new_job_quotas_reached`, `claimed`, and each job in the
    given order (a single row with no job when the quotas refused the batch)."""

    def given(key: str, item_type: Any) -> ColumnElement[Any]:
        return func.unnest(literal([row[key] for row in rows], ARRAY(item_type))).label(key)

    reached = quotas.new_job_quotas_reached(owner_id, plan, now, len(rows)).cte("quotas_reached")
    batch = select(
        func.unnest(literal(list(range(len(rows))), ARRAY(Integer))).label("ord"),
        given("name", String),
        given("description", Text),
        given("kind", String),
        cast(given("params", Text), JSONB).label("params"),
        given("scheduled_time", DateTime(timezone=True)),
        given("priority", Integer),
        given("max_attempts", Integer),
        given("queued", Boolean),
        given("queue_at", DateTime(timezone=True)),
        given("marks", Text),
    ).subquery("batch")
    ordered = select(batch).order_by(batch.c.ord).subquery("ordered")
    # Ids drawn in the request's order, once (MATERIALIZED): each job and its entry share it.
    drawn = (
        select(
            func.nextval(func.pg_get_serial_sequence(Job.__tablename__, Job.id.key)).label("id"),
            *ordered.c,
        )
        .select_from(ordered.join(reached, quotas.new_job_allowed(reached)))
        .cte("drawn")
        .prefix_with("MATERIALIZED")
    )
    named: list[Any] = ["job_id", drawn.c.id, "owner_id", literal(owner_id, BigInteger)]
    request_id = logs.current_request_id()
    if request_id is not None:
        # As queue_entry's: the attempts' log lines name the request that queued them.
        named += ["request_id", literal(request_id, String)]
    # With the kind's marks, as queue_entry's (see entry_marks).
    entry_args = func.jsonb_build_object(*named).op("||")(cast(drawn.c.marks, JSONB))
    entries = queue.insert_entries(
        select(
            literal(QUEUE_JOBS, String),
            literal(PROCESS_JOB_TASK, String),
            drawn.c.priority,
            job_lock(drawn.c.id),
            job_lock(drawn.c.id),
            entry_args,
            drawn.c.queue_at,
        ).where(drawn.c.queued)
    ).cte("entries")
    fixed = {
        "owner_id": owner_id,
        "created_at": now,
        "updated_at": now,
        "status": JobStatus.PENDING.value,
        "attempts": 0,
    }
    columns = Job.__table__.c
    copied = ("name", "description", "kind", "params", "scheduled_time", "priority", "max_attempts")
    inserted = (
        insert(Job)
        .from_select(
            ["id", "queue_job_id", *copied, *fixed],
            select(
                drawn.c.id,
                entries.c.id,
                *(drawn.c[key] for key in copied),
                *(literal(value, columns[key].type) for key, value in fixed.items()),
            ).select_from(
                drawn.outerjoin(
                    entries, cast(entries.c.args["job_id"].astext, BigInteger) == drawn.c.id
                )
            ),
        )
        .returning(*columns)
        .cte("inserted")
    )
    if idempotency_key is None:
        claimed: ColumnElement[Any] = literal(True)
    else:
        claim = (
            pg_insert(IdempotencyKey)
            .from_select(
                ["user_id", "key", "request_hash", "job_id", "job_ids", "created_at"],
                select(
                    literal(owner_id),
                    literal(idempotency_key, String),
                    literal(fingerprint, String),
                    func.min(inserted.c.id),
                    func.array_agg(aggregate_order_by(inserted.c.id, inserted.c.id)),
                    literal(now, DateTime(timezone=True)),
                ).having(func.count() > 0),
            )
            # Waits for a concurrent request holding the same key: losing means the
            # winner's jobs are committed and readable (create_jobs replays them).
            .on_conflict_do_nothing()
            .returning(IdempotencyKey.key)
            .cte("claim")
        )
        claimed = select(func.count() > 0).select_from(claim).scalar_subquery()
    return (
        select(
            reached.c.max_open_jobs,
            reached.c.jobs_per_day,
            claimed.label("claimed"),
            aliased(Job, inserted),
        )
        .select_from(reached)
        .outerjoin(inserted, true())
        .order_by(inserted.c.id)
    )


def _replayed_jobs(owner_id: int, key: str | None, fingerprint: str) -> list[Job] | None:
    """The jobs a batch with this key and body created, in their order; None when the key
    is new; 422 for a key used with another body."""
    if key is None:
        return None
    record = db.session.get(IdempotencyKey, (owner_id, key))
    if record is None:
        return None
    if record.request_hash != fingerprint or record.job_ids is None:
        raise Unprocessable(
            "This Idempotency-Key was already used with a different request body.",
            errors={"headers": {"Idempotency-Key": ["Already used with a different body."]}},
        )
    return list(db.session.scalars(select(Job).where(Job.id.in_(record.job_ids)).order_by(Job.id)))


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
    schedule_jobs([job], at)
    assert job.queue_job_id is not None
    return job.queue_job_id


def schedule_jobs(jobs: Sequence[Job], at: datetime | None = None) -> None:
    """`schedule_job` for many jobs (the operators' bulk actions): one deferral statement
    for the lot (one per set of entry marks among them), whose entries are built in SQL
    from arrays of the jobs' ids, owners and priorities."""
    if not jobs:
        return
    if any(job.id is None for job in jobs):
        db.session.flush()
    if len(jobs) == 1:
        job = jobs[0]
        job.queue_job_id = db.session.scalar(
            select(queue_entry(literal(job.id), job.owner_id, job.kind, job.priority, at))
        )
        return
    by_marks: dict[tuple[tuple[str, bool], ...], list[Job]] = {}
    for job in jobs:
        by_marks.setdefault(tuple(sorted(entry_marks(job.kind).items())), []).append(job)
    for marks, group in by_marks.items():
        rows = (
            func.unnest(
                cast([job.id for job in group], ARRAY(BigInteger)),
                cast([job.owner_id for job in group], ARRAY(BigInteger)),
                cast([job.priority for job in group], ARRAY(Integer)),
            )
            .table_valued("job_id", "owner_id", "priority")
            .render_derived()
        )
        entries = select(
            func.array_agg(
                _to_defer(rows.c.job_id, rows.c.owner_id, dict(marks), rows.c.priority, at)
            )
        ).select_from(rows)
        entry_ids = db.session.scalar(select(queue.deferrals_of(entries.scalar_subquery())))
        by_job = queue.entry_args(entry_ids, "job_id")
        for job in group:
            job.queue_job_id = by_job[job.id]


def queue_entry(
    job_id: ColumnElement[int], owner_id: int, kind: str, priority: int, at: datetime | None
) -> ColumnElement[int]:
    """SQL deferring an attempt of job `job_id` for `at`, whose value is the entry's id."""
    return queue.deferrals([_to_defer(job_id, owner_id, entry_marks(kind), priority, at)])[1]


def entry_marks(kind: str) -> dict[str, bool]:
    """What the queue's fetch must know of a `kind` entry beyond its owner: `long`, it
    takes one of a worker's long-job slots (migrations/sql/long_job_slots_0009.sql);
    `async`, its processor runs on the worker's event loop and needs none of the
    WORKER_CONCURRENCY slots of blocking kinds (migrations/sql/async_slots_0014.sql). An
    unknown kind, or an entry queued before a mark existed, carries none: long only by
    its time limit, and blocking."""
    processor = get_processor(kind)
    marks = {}
    if processor is not None and processor.long:
        marks["long"] = True
    if processor is not None and not processor.blocking:
        marks["async"] = True
    return marks


def _to_defer(
    job_id: ColumnElement[int],
    owner_id: int | ColumnElement[int],
    marks: dict[str, bool],
    priority: int | ColumnElement[int],
    at: datetime | None,
) -> ColumnElement[Any]:
    args: dict[str, Any] = {"job_id": job_id, "owner_id": owner_id}
    request_id = logs.current_request_id()
    if request_id is not None:
        # The attempts' log lines name the request that queued them (jobboard/logs.py).
        args["request_id"] = request_id
    args.update(marks)
    return queue.to_defer(
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


def attempts_of(job_id: int) -> Select[tuple[JobAttempt]]:
    """Every attempt of job `job_id`, oldest first (for whoever may see the job)."""
    return select(JobAttempt).where(JobAttempt.job_id == job_id).order_by(JobAttempt.id)


def visible_attempts_query(user: User, job_id: int) -> Select[tuple[JobAttempt]]:
    """The attempts of a job its owner, its assignee or an admin sees; 404 otherwise."""
    return attempts_of(get_visible_job(user, job_id).id)


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


def all_jobs_query(filters: Mapping[str, Any]) -> Select[tuple[Job]]:
    """Every user's jobs (the operations console): the list's filters, `owner` and `error`
    too."""
    return _filtered(select(Job), filters)


def _filtered(query: Select[tuple[Job]], filters: Mapping[str, Any]) -> Select[tuple[Job]]:
    return sorted_by(query.where(*job_filter(filters)), filters.get("sort"))


def job_filter(filters: Mapping[str, Any]) -> list[ColumnElement[bool]]:
    """The criteria of the job lists' filters (`JobQueryArgs`, and the operators' `owner`
    and `error`): the one definition of what each filter matches."""
    criteria: list[ColumnElement[bool]] = []
    statuses = filters.get("status")
    if statuses:
        criteria.append(Job.status.in_(statuses))
    elif statuses is not None:  # an explicitly empty list matches nothing
        criteria.append(false())
    if filters.get("kind"):
        criteria.append(Job.kind == filters["kind"])
    # Ranges are half-open: `*_after` is inclusive, `*_before` exclusive.
    if filters.get("scheduled_after") is not None:
        criteria.append(Job.scheduled_time >= filters["scheduled_after"])
    if filters.get("scheduled_before") is not None:
        criteria.append(Job.scheduled_time < filters["scheduled_before"])
    if filters.get("created_after") is not None:
        criteria.append(Job.created_at >= filters["created_after"])
    if filters.get("created_before") is not None:
        criteria.append(Job.created_at < filters["created_before"])
    if filters.get("q"):
        q = filters["q"]
        criteria.append(
            or_(
                Job.name.icontains(q, autoescape=True),
                Job.description.icontains(q, autoescape=True),
            )
        )
    if filters.get("owner"):
        # Emails are unique without regard to case (uq_users_email_lower).
        owner_id = select(User.id).where(func.lower(User.email) == filters["owner"].lower())
        criteria.append(Job.owner_id == owner_id.scalar_subquery())
    if filters.get("error") is not None:
        criteria.append(Job.last_error.icontains(filters["error"], autoescape=True))
    return criteria


def error_first_line(error: ColumnElement[str | None]) -> ColumnElement[str]:
    """An error's first line, as failures are grouped by it."""
    return func.split_part(func.coalesce(error, ""), "\n", 1)


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

"""Plan quotas: the one home of every per-plan limit checked by the API, and of the size
rule of the JSON a user hands in (a job's params, a delivery's output).

Services call these; views never do. Each check that counts runs under the user's row
lock (`FOR NO KEY UPDATE`, held until the caller's transaction ends), so two concurrent
requests of one user at the limit are counted one after the other and cannot both pass.
A new job's counts are part of the statement that inserts it (`new_job_quotas_reached`),
and `POST /api/jobs/` takes the lock with its token lookup (`with_user_locked`).
A job going back to the queue (retry, release, run-now) counts like a new one
(`admit_requeue`); a retry is also one of the day's jobs (`job_retries`).
The running-jobs limit is not here: the queue applies it when it fetches (docs/architecture.md,
"The fair queue").
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import (
    ColumnElement,
    Row,
    ScalarSelect,
    Select,
    and_,
    false,
    func,
    insert,
    not_,
    select,
)
from sqlalchemy.orm import SessionTransaction
from sqlalchemy.sql.selectable import NamedFromClause

from jobboard.errors import TooManyRequests, Unprocessable
from jobboard.extensions import db
from jobboard.locking import for_update
from jobboard.models import (
    OPEN_JOB_STATUSES,
    Bid,
    Job,
    JobRetry,
    JobStatus,
    Plan,
    User,
    WebhookEndpoint,
    now_utc,
)


def start_of_utc_day(now: datetime) -> datetime:
    return datetime.combine(now.date(), time(0), tzinfo=now.tzinfo)


def seconds_to_next_utc_day(now: datetime) -> int:
    """Retry-After of a daily quota: whole seconds until the next UTC midnight (at least 1)."""
    next_day = start_of_utc_day(now) + timedelta(days=1)
    return max(1, int((next_day - now).total_seconds() + 0.999))


def json_size(value: Any) -> int:
    """The size that `max_params_bytes` and MAX_DELIVERY_OUTPUT_BYTES limit: the value as
    compact UTF-8 JSON (`{"a":1}` is 7 bytes; "é" counts 2 bytes, not the 6 of `\\u00e9`)."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def plan_for_update(user_id: int) -> Plan:
    """The user's plan, with the user's row locked until the transaction ends: one
    statement, the plan coming with the lock, or none when this transaction already took
    the lock with the request's token lookup (`with_user_locked`). What the limits count
    must be read by a later statement: one that waited for the lock sees only what its
    snapshot, taken before the wait, saw."""
    held = db.session.info.get(_HELD_LOCK)
    if held is not None and held.user_id == user_id and held.transaction is _transaction():
        return held.plan
    return db.session.scalars(
        _lock_user(select(Plan).join(User, User.plan_name == Plan.name).where(User.id == user_id))
    ).one()


def with_user_locked(query: Select[Any]) -> Select[Any]:
    """`query`, which selects one user by id, locking that user's row as `plan_for_update`
    does and bringing the user's plan as its last column. Pass the user and the plan to
    `held_lock` then: the quota checks of the rest of the transaction use them, and count
    in statements that start after this one."""
    return _lock_user(query.add_columns(Plan).join(Plan, User.plan_name == Plan.name))


def held_lock(user: User, plan: Plan) -> None:
    """The current transaction holds `user`'s row lock, taken with `with_user_locked`."""
    db.session.info[_HELD_LOCK] = _HeldLock(user.id, plan, _transaction())


@dataclass(frozen=True)
class _HeldLock:
    user_id: int
    plan: Plan
    # A row lock lasts as long as its transaction: the record is void once it ended.
    transaction: SessionTransaction | None


_HELD_LOCK = "jobboard.quotas.held_lock"


def _transaction() -> SessionTransaction | None:
    return db.session().get_transaction()


def _lock_user(query: Select[Any]) -> Select[Any]:
    # NO KEY UPDATE: inserting a job (or bid) referencing the user takes a KEY SHARE lock
    # on the row, which this one lets through.
    return for_update(query, no_key=True, of=User)


def check_params_size(plan: Plan, params: Any) -> None:
    size = json_size(params)
    if size > plan.max_params_bytes:
        message = (
            f"params is {size} bytes as JSON; your plan '{plan.name}' allows "
            f"max_params_bytes = {plan.max_params_bytes}."
        )
        raise Unprocessable(message, errors={"json": {"params": [message]}})


def new_job_quotas_reached(
    user_id: int, plan: Plan, now: datetime, count: int = 1
) -> Select[tuple[bool, bool]]:
    """One row: whether `count` new jobs would pass `max_open_jobs` or `jobs_per_day`
    (columns named so), counted by the statement it is part of. Run it in the statement
    that inserts the jobs, under `plan_for_update`'s lock (jobs.service.create_job,
    create_jobs): two creates of one user are then counted one after the other. A batch
    counts whole: it fits, or none of it goes in."""
    day_start = start_of_utc_day(now)
    return select(
        (_open_jobs(user_id) > plan.max_open_jobs - count).label("max_open_jobs"),
        (_jobs_since(user_id, day_start) > plan.jobs_per_day - count).label("jobs_per_day"),
    )


def new_job_allowed(reached: NamedFromClause) -> ColumnElement[bool]:
    """The condition on `new_job_quotas_reached`'s row that lets a new job in."""
    return and_(not_(reached.c.max_open_jobs), not_(reached.c.jobs_per_day))


def refuse_new_job(
    plan: Plan, reached: Row[Any], now: datetime, whose: str = "your", count: int = 1
) -> None:
    """429 naming the quota that `reached` (a `new_job_quotas_reached` row) says is
    reached, max_open_jobs first; nothing when neither is (then `new_job_allowed` held).
    `whose` plan it is, as the message names it ("your", "the job owner's"); `count`, how
    many jobs the refused request asked for."""
    asked = "" if count == 1 else f" A batch of {count} jobs counts whole."
    if reached.max_open_jobs:
        raise TooManyRequests(
            f"max_open_jobs reached: {whose} plan '{plan.name}' allows {plan.max_open_jobs} "
            f"open (pending or in progress) jobs; wait for some to finish or cancel some.{asked}",
            headers={"Retry-After": str(current_app.config["OPEN_JOBS_RETRY_AFTER_SECONDS"])},
        )
    if reached.jobs_per_day:
        raise TooManyRequests(
            f"jobs_per_day reached: {whose} plan '{plan.name}' allows {plan.jobs_per_day} new "
            f"jobs (retries included) per UTC day.{asked}",
            headers={"Retry-After": str(seconds_to_next_utc_day(now))},
        )


def check_delivery_output_size(output: Any) -> None:
    """422 for a delivery's output over MAX_DELIVERY_OUTPUT_BYTES (the same for every plan)."""
    limit = current_app.config["MAX_DELIVERY_OUTPUT_BYTES"]
    if json_size(output) > limit:
        raise Unprocessable(
            f"output is larger than {limit} bytes as JSON.",
            errors={"json": {"output": [f"Larger than {limit} bytes as JSON."]}},
        )


def admit_requeue(job: Job, *, retry: bool = False, by_owner: bool = True) -> None:
    """Let `job` go back to the queue (a retry, a release, a run-now), or refuse it with
    429 as a create would be refused: the owner's *other* open jobs must be fewer than
    `max_open_jobs` (a job that is open already keeps its place, so this bites an owner
    over the limit, whose plan changed since), and for a retry the jobs created and
    retried since 00:00 UTC fewer than `jobs_per_day`; an admitted retry is recorded as
    one of the day's jobs. The caller holds the job's row lock; this takes the owner's
    (the lock order of jobboard.bids.service: the job first) and counts after it, so two
    requeues or a requeue and a create of one owner are counted one after the other."""
    plan = plan_for_update(job.owner_id)
    now = now_utc()
    others_full = _open_jobs(job.owner_id, besides=job.id) >= plan.max_open_jobs
    day_full = _jobs_since(job.owner_id, start_of_utc_day(now)) >= plan.jobs_per_day
    reached = db.session.execute(
        select(
            others_full.label("max_open_jobs"),
            (day_full if retry else false()).label("jobs_per_day"),
        )
    ).one()
    refuse_new_job(plan, reached, now, "your" if by_owner else "the job owner's")
    if retry:
        db.session.add(JobRetry(job_id=job.id, owner_id=job.owner_id, retried_at=now))


def admit_requeues(jobs: Sequence[Job], *, retry: bool = False) -> list[Job]:
    """`admit_requeue` for many locked jobs at once (an operator's bulk action): the same
    rule, counted once for the lot instead of once a job. The owners' rows are locked in
    id order, then one statement counts each owner's open jobs and the day's jobs; the
    jobs are admitted in the order given while their owner stays under the quotas, each
    admitted one counting for the next. Returns the admitted jobs (the others are left
    where they are); an admitted retry is recorded as one of the day's jobs."""
    if not jobs:
        return []
    owner_ids = sorted({job.owner_id for job in jobs})
    db.session.execute(
        _lock_user(select(User.id).where(User.id.in_(owner_ids)).order_by(User.id))
    ).all()
    now = now_utc()
    since = start_of_utc_day(now)
    owner = select(User.id.label("owner_id"), Plan.max_open_jobs, Plan.jobs_per_day).join(
        Plan, User.plan_name == Plan.name
    )
    counts = {
        row.owner_id: [row.max_open_jobs, row.jobs_per_day, row.open_jobs, row.day_jobs]
        for row in db.session.execute(
            # A statement after the lock's: it counts what the lock's holders committed.
            owner.add_columns(
                _open_jobs(User.id).label("open_jobs"),
                _jobs_since(User.id, since).label("day_jobs"),
            ).where(User.id.in_(owner_ids))
        )
    }
    admitted = []
    for job in jobs:
        counted = counts[job.owner_id]
        max_open_jobs, jobs_per_day, open_jobs, day_jobs = counted
        already_open = job.status in OPEN_JOB_STATUSES
        if open_jobs - already_open >= max_open_jobs:
            continue
        if retry and day_jobs >= jobs_per_day:
            continue
        counted[2] += not already_open
        counted[3] += retry
        admitted.append(job)
    if retry and admitted:
        db.session.execute(
            insert(JobRetry),
            [{"job_id": job.id, "owner_id": job.owner_id, "retried_at": now} for job in admitted],
        )
    return admitted


def check_job_params(user_id: int, params: Any) -> None:
    """The params size rule alone, for changing a job's params (422)."""
    plan = db.session.scalars(
        select(Plan).join(User, User.plan_name == Plan.name).where(User.id == user_id)
    ).one()
    check_params_size(plan, params)


def check_new_bid(user_id: int) -> None:
    """Refuse a bid over the bidder's plan's bids_per_day (429)."""
    plan = plan_for_update(user_id)
    now = now_utc()
    if count_bids_since(user_id, start_of_utc_day(now)) >= plan.bids_per_day:
        raise TooManyRequests(
            f"bids_per_day reached: your plan '{plan.name}' allows {plan.bids_per_day} bids "
            "per UTC day.",
            headers={"Retry-After": str(seconds_to_next_utc_day(now))},
        )


def _open_jobs(user_id: int | ColumnElement[int], besides: int | None = None) -> ScalarSelect[int]:
    query = (
        select(func.count())
        .select_from(Job)
        .where(Job.owner_id == user_id, Job.status.in_([s.value for s in OPEN_JOB_STATUSES]))
    )
    if besides is not None:
        query = query.where(Job.id != besides)
    return query.scalar_subquery()


def _jobs_since(user_id: int | ColumnElement[int], since: datetime) -> ColumnElement[int]:
    """What `jobs_per_day` counts: jobs created since `since`, and retries since then."""
    created = (
        select(func.count())
        .select_from(Job)
        .where(Job.owner_id == user_id, Job.created_at >= since)
        .scalar_subquery()
    )
    retried = (
        select(func.count())
        .select_from(JobRetry)
        .where(JobRetry.owner_id == user_id, JobRetry.retried_at >= since)
        .scalar_subquery()
    )
    return created + retried


def count_open_jobs(user_id: int) -> int:
    return db.session.scalar(select(_open_jobs(user_id))) or 0


def count_running_jobs(user_id: int) -> int:
    """The owner's jobs the queue is running now (a job handed to a person is not)."""
    return db.session.scalar(
        select(func.count())
        .select_from(Job)
        .where(
            Job.owner_id == user_id,
            Job.status == JobStatus.IN_PROGRESS,
            Job.assignee_id.is_(None),
        )
    )


def count_jobs_since(user_id: int, since: datetime) -> int:
    return db.session.scalar(select(_jobs_since(user_id, since))) or 0


def count_bids_since(user_id: int, since: datetime) -> int:
    return db.session.scalar(
        select(func.count())
        .select_from(Bid)
        .where(Bid.bidder_id == user_id, Bid.created_at >= since)
    )


@dataclass
class Usage:
    running_jobs: int
    open_jobs: int
    jobs_today: int
    bids_today: int


def usage_of(user_id: int, now: datetime | None = None) -> Usage:
    today = start_of_utc_day(now or now_utc())
    return Usage(
        running_jobs=count_running_jobs(user_id),
        open_jobs=count_open_jobs(user_id),
        jobs_today=count_jobs_since(user_id, today),
        bids_today=count_bids_since(user_id, today),
    )


def check_new_webhook_endpoint(user_id: int) -> None:
    """Refuse an endpoint over the plan's max_webhook_endpoints (429), counted under the
    user's row lock: two creates at the limit cannot both pass."""
    plan = plan_for_update(user_id)
    count = db.session.scalar(
        select(func.count()).select_from(WebhookEndpoint).where(WebhookEndpoint.user_id == user_id)
    )
    if count >= plan.max_webhook_endpoints:
        raise TooManyRequests(
            f"max_webhook_endpoints reached: your plan '{plan.name}' allows "
            f"{plan.max_webhook_endpoints} webhook endpoints; delete one first.",
            headers={"Retry-After": str(current_app.config["OPEN_JOBS_RETRY_AFTER_SECONDS"])},
        )

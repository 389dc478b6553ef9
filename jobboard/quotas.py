"""Plan quotas (SPEC §9): the one home of every per-plan limit checked by the API.

Services call these; views never do. Each check that counts runs under the user's row
lock (`FOR NO KEY UPDATE`, held until the caller's transaction ends), so two concurrent
requests of one user at the limit are counted one after the other and cannot both pass.
The running-jobs limit is not here: the queue applies it when it fetches (README, "Plans,
quotas and the fair queue").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import ScalarSelect, func, select

from jobboard.errors import TooManyRequests, Unprocessable
from jobboard.extensions import db
from jobboard.models import Bid, Job, JobStatus, Plan, User, now_utc

OPEN_JOB_STATUSES = (JobStatus.PENDING, JobStatus.IN_PROGRESS)


def start_of_utc_day(now: datetime) -> datetime:
    return datetime.combine(now.date(), time(0), tzinfo=now.tzinfo)


def seconds_to_next_utc_day(now: datetime) -> int:
    """Retry-After of a daily quota: whole seconds until the next UTC midnight (at least 1)."""
    next_day = start_of_utc_day(now) + timedelta(days=1)
    return max(1, int((next_day - now).total_seconds() + 0.999))


def params_size(params: Any) -> int:
    """The size that `max_params_bytes` limits: the params as compact UTF-8 JSON."""
    return len(json.dumps(params, separators=(",", ":"), ensure_ascii=False).encode())


def plan_for_update(user_id: int) -> Plan:
    """The user's plan, with the user's row locked until the transaction ends (one
    statement: the plan comes with the lock). What the limits count must be read by a
    later statement: one that waited for the lock sees only what its snapshot, taken
    before the wait, saw."""
    return db.session.scalars(
        select(Plan)
        .join(User, User.plan_name == Plan.name)
        .where(User.id == user_id)
        .with_for_update(of=User, key_share=True)
    ).one()


def check_params_size(plan: Plan, params: Any) -> None:
    size = params_size(params)
    if size > plan.max_params_bytes:
        message = (
            f"params is {size} bytes as JSON; your plan '{plan.name}' allows "
            f"max_params_bytes = {plan.max_params_bytes}."
        )
        raise Unprocessable(message, errors={"json": {"params": [message]}})


def check_new_job(user_id: int, params: Any) -> None:
    """Refuse a job over the owner's plan: params size (422), max_open_jobs and
    jobs_per_day (429). Locks the owner's row for the rest of the transaction."""
    plan = plan_for_update(user_id)
    check_params_size(plan, params)
    now = now_utc()
    # Both counts in one statement, taken after the lock (see plan_for_update).
    open_jobs, jobs_today = db.session.execute(
        select(_open_jobs(user_id), _jobs_since(user_id, start_of_utc_day(now)))
    ).one()
    if open_jobs >= plan.max_open_jobs:
        raise TooManyRequests(
            f"max_open_jobs reached: your plan '{plan.name}' allows {plan.max_open_jobs} "
            "open (pending or in progress) jobs; wait for some to finish or cancel some.",
            headers={"Retry-After": str(current_app.config["OPEN_JOBS_RETRY_AFTER_SECONDS"])},
        )
    if jobs_today >= plan.jobs_per_day:
        raise TooManyRequests(
            f"jobs_per_day reached: your plan '{plan.name}' allows {plan.jobs_per_day} new "
            "jobs per UTC day.",
            headers={"Retry-After": str(seconds_to_next_utc_day(now))},
        )


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


def _open_jobs(user_id: int) -> ScalarSelect[int]:
    return (
        select(func.count())
        .select_from(Job)
        .where(Job.owner_id == user_id, Job.status.in_([s.value for s in OPEN_JOB_STATUSES]))
        .scalar_subquery()
    )


def _jobs_since(user_id: int, since: datetime) -> ScalarSelect[int]:
    return (
        select(func.count())
        .select_from(Job)
        .where(Job.owner_id == user_id, Job.created_at >= since)
        .scalar_subquery()
    )


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

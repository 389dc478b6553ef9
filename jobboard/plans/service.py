"""The rules of plans: which plan a user is on, subscriptions and their end, and the
caller's limits with live usage. Admins change plans through the CLI only."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import func, select, text

from jobboard import quotas
from jobboard.errors import Conflict, NotFound, Unprocessable
from jobboard.events.outbox import tell
from jobboard.extensions import db
from jobboard.locking import for_update
from jobboard.models import FREE_PLAN, Plan, User, now_utc

logger = logging.getLogger(__name__)

PLAN_LIMITS = (
    "max_running_jobs",
    "max_open_jobs",
    "jobs_per_day",
    "max_params_bytes",
    "bids_per_day",
)


@dataclass
class PlanStatus:
    plan: Plan
    usage: quotas.Usage
    renews_at: datetime | None


def plan_status(user: User) -> PlanStatus:
    """The caller's plan, their live usage of it, and when the subscription ends."""
    plan = db.session.get(Plan, user.plan_name)
    return PlanStatus(plan=plan, usage=quotas.usage_of(user.id), renews_at=user.plan_ends_at)


def list_plans() -> list[Plan]:
    return list(db.session.scalars(select(Plan).order_by(Plan.max_running_jobs, Plan.name)))


def create_plan(name: str, limits: dict[str, int]) -> Plan:
    """A new plan; 409 when the name is taken, 422 for a limit below its minimum."""
    if db.session.get(Plan, name) is not None:
        raise Conflict(f"A plan named {name!r} already exists.")
    minimums = {"bids_per_day": 0, "max_params_bytes": 2}
    for field in PLAN_LIMITS:
        if limits[field] < minimums.get(field, 1):
            message = f"{field} must be at least {minimums.get(field, 1)}."
            raise Unprocessable(message, errors={field: [message]})
    plan = Plan(name=name, **{field: limits[field] for field in PLAN_LIMITS})
    db.session.add(plan)
    db.session.commit()
    return plan


def assign_plan(email: str, plan_name: str, until: datetime | None) -> User:
    """Put the user on `plan_name` until `until`. Free never ends; any other plan must end
    in the future. The queue picks up the new running limit at once."""
    plan = db.session.get(Plan, plan_name)
    if plan is None:
        raise NotFound(f"No plan named {plan_name!r}.")
    user = db.session.scalars(
        for_update(select(User).where(func.lower(User.email) == email.lower()))
    ).first()
    if user is None:
        raise NotFound(f"No user with email {email}.")
    if plan.name == FREE_PLAN:
        until = None
    elif until is None or until <= now_utc():
        message = f"A subscription to {plan.name!r} needs an end date in the future."
        raise Unprocessable(message, errors={"until": [message]})
    user.plan_name = plan.name
    user.plan_ends_at = until
    user.plan_reminded_at = None
    db.session.flush()
    _refresh_queue_limit(user.id)
    db.session.commit()
    return user


def _refresh_queue_limit(user_id: int) -> None:
    # The fair fetch keeps a copy of each owner's max_running_jobs (fair_queue_0004.sql).
    db.session.execute(text("SELECT jobboard_refresh_queue_owner(:user_id)"), {"user_id": user_id})


def process_subscriptions(now: datetime) -> dict[str, int]:
    """As of `now`: remind once each subscriber whose plan ends within PLAN_REMINDER_DAYS
    (`plan.ending`), and move those whose plan has ended back to free (`plan.ended`); the
    events, written with the change, bring the emails.
    Safe to re-run: each user is reminded once per subscription and moved once."""
    reminder_days = current_app.config["PLAN_REMINDER_DAYS"]
    # SKIP LOCKED: two workers running this at once each take their own users.
    ended = list(
        db.session.scalars(
            for_update(
                select(User)
                .where(User.plan_ends_at.is_not(None), User.plan_ends_at <= now)
                .order_by(User.id),
                skip_locked=True,
            )
        )
    )
    for user in ended:
        old_plan = user.plan_name
        user.plan_name = FREE_PLAN
        user.plan_ends_at = None
        user.plan_reminded_at = None
        db.session.flush()
        _refresh_queue_limit(user.id)
        tell("plan.ended", user=user, plan=db.session.get(Plan, FREE_PLAN), previous_plan=old_plan)
        logger.info("user %s: %s plan ended, now on %s", user.id, old_plan, FREE_PLAN)
    ending = list(
        db.session.scalars(
            for_update(
                select(User)
                .where(
                    User.plan_ends_at.is_not(None),
                    User.plan_ends_at > now,
                    User.plan_ends_at <= now + timedelta(days=reminder_days),
                    User.plan_reminded_at.is_(None),
                )
                .order_by(User.id),
                skip_locked=True,
            )
        )
    )
    for user in ending:
        user.plan_reminded_at = now
        plan = db.session.get(Plan, user.plan_name)
        tell("plan.ending", user=user, plan=plan, ends_at=user.plan_ends_at)
    db.session.commit()
    return {"reminded": len(ending), "ended": len(ended)}


def plan_limits(plan: Plan) -> dict[str, Any]:
    return {"name": plan.name, **{field: getattr(plan, field) for field in PLAN_LIMITS}}

"""`flask plans list|create|assign`: admins change plans here only, never through the API.

Plans are data on stdout (a table, or `--json`); see jobboard/cli_output.py for how
commands speak.
"""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any

import click
from flask.cli import AppGroup

from jobboard.cli_output import emit, emit_json, emit_table, json_option, refusals
from jobboard.models import Plan
from jobboard.plans import service

plans_cli = AppGroup("plans", help="Subscription plans and who is on which.")


def _show_plans(plans: list[Plan], as_json: bool) -> None:
    limits = [service.plan_limits(plan) for plan in plans]
    if as_json:
        emit_json(limits)
        return
    header = ("name", *service.PLAN_LIMITS)
    emit_table(header, [[values[column] for column in header] for values in limits])


@plans_cli.command("list")
@json_option
def list_plans(as_json: bool) -> None:
    """The plans and their limits."""
    _show_plans(service.list_plans(), as_json)


@plans_cli.command("create")
@click.argument("name")
@click.option("--max-running-jobs", type=int, required=True)
@click.option("--max-open-jobs", type=int, required=True)
@click.option("--jobs-per-day", type=int, required=True)
@click.option("--max-params-bytes", type=int, required=True)
@click.option("--bids-per-day", type=int, required=True)
@json_option
def create_plan(name: str, as_json: bool, **limits: int) -> None:
    """Create plan NAME with the given limits; prints the plan."""
    with refusals():
        plan = service.create_plan(name, limits)
    _show_plans([plan], as_json)


def _end_of(value: datetime) -> datetime:
    """--until 2027-01-31 means to the end of that UTC day; a time with an offset is kept."""
    if value.tzinfo is not None:
        return value
    if value.time() == time(0):
        return datetime.combine(value.date(), time(23, 59, 59), tzinfo=UTC)
    return value.replace(tzinfo=UTC)


@plans_cli.command("assign")
@click.argument("email")
@click.argument("plan")
@click.option(
    "--until",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M:%S"]),
    help="End of the subscription (UTC; a bare date means the end of that day). "
    "Required for any plan but free.",
)
@json_option
def assign_plan(email: str, plan: str, until: datetime | None, as_json: bool) -> None:
    """Put the user EMAIL on PLAN; prints who is on which plan until when."""
    with refusals():
        user = service.assign_plan(email, plan, _end_of(until) if until else None)
    subscription: dict[str, Any] = {
        "user_id": user.id,
        "email": user.email,
        "plan": user.plan_name,
        "plan_ends_at": user.plan_ends_at,
    }
    if as_json:
        emit_json(subscription)
    else:
        ends = user.plan_ends_at.isoformat() if user.plan_ends_at else "no end"
        emit(f"{user.email} (user {user.id}) is on plan {user.plan_name} ({ends})")

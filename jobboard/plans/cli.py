"""`flask plans list|create|assign`: admins change plans here only, never through the API."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, time

import click
from flask.cli import AppGroup

from jobboard.errors import DomainError
from jobboard.plans import service

logger = logging.getLogger(__name__)

plans_cli = AppGroup("plans", help="Subscription plans and who is on which.")


@plans_cli.command("list")
def list_plans() -> None:
    """The plans and their limits, as a table."""
    header = ("name", *service.PLAN_LIMITS)
    click.echo("  ".join(f"{column:>16}" for column in header))
    for plan in service.list_plans():
        values = service.plan_limits(plan)
        click.echo("  ".join(f"{values[column]!s:>16}" for column in header))


@plans_cli.command("create")
@click.argument("name")
@click.option("--max-running-jobs", type=int, required=True)
@click.option("--max-open-jobs", type=int, required=True)
@click.option("--jobs-per-day", type=int, required=True)
@click.option("--max-params-bytes", type=int, required=True)
@click.option("--bids-per-day", type=int, required=True)
def create_plan(name: str, **limits: int) -> None:
    """Create plan NAME with the given limits."""
    try:
        plan = service.create_plan(name, limits)
    except DomainError as error:
        raise click.ClickException(error.message) from None
    logger.info("created plan %s: %s", plan.name, service.plan_limits(plan))


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
def assign_plan(email: str, plan: str, until: datetime | None) -> None:
    """Put the user EMAIL on PLAN."""
    try:
        user = service.assign_plan(email, plan, _end_of(until) if until else None)
    except DomainError as error:
        raise click.ClickException(error.message) from None
    ends = user.plan_ends_at.isoformat() if user.plan_ends_at else "no end"
    logger.info("%s (user %s) is on plan %s (%s)", user.email, user.id, user.plan_name, ends)

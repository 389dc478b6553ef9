"""Periodic task of plans: reminders before a subscription ends, and its end."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from jobboard.plans.service import process_subscriptions
from workers.app import QUEUE_MAINTENANCE, SUBSCRIPTIONS_TASK, task_app
from workers.context import app_context

logger = logging.getLogger(__name__)


@task_app.periodic(cron="*/5 * * * *", periodic_id="subscriptions")
@task_app.task(name=SUBSCRIPTIONS_TASK, queue=QUEUE_MAINTENANCE, queueing_lock=SUBSCRIPTIONS_TASK)
def process_plan_subscriptions(timestamp: int) -> dict[str, int]:
    """As of the periodic tick `timestamp`: remind subscribers whose plan ends within
    PLAN_REMINDER_DAYS (once), and move ended subscriptions back to free with an email."""
    now = datetime.fromtimestamp(timestamp, tz=UTC)
    with app_context():
        done = process_subscriptions(now)
    if any(done.values()):
        logger.info("subscriptions as of %s: %s", now.isoformat(), done)
    return done

"""Periodic housekeeping of the accounts tables."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from jobboard.auth.service import (
    delete_unverified_accounts,
    purge_expired_otps,
    purge_expired_revoked_tokens,
)
from jobboard.ratelimit import purge_expired_rate_limits
from workers.app import PURGE_TASK, QUEUE_MAINTENANCE, UNVERIFIED_TASK, task_app
from workers.context import app_context

logger = logging.getLogger(__name__)


# The queueing lock keeps at most one purge waiting, however long the workers were away.
@task_app.periodic(cron="*/10 * * * *", periodic_id="every-10-minutes")
@task_app.task(name=PURGE_TASK, queue=QUEUE_MAINTENANCE, queueing_lock=PURGE_TASK)
def purge_expired_auth_records(timestamp: int) -> dict[str, int]:
    """Delete expired or consumed OTPs, revocations of tokens that expired anyway and
    rate-limit counters whose window has passed, as of the periodic tick `timestamp`
    (seconds since the epoch). Safe to re-run."""
    now = datetime.fromtimestamp(timestamp, tz=UTC)
    with app_context():
        purged = {
            "otps": purge_expired_otps(now),
            "revoked_tokens": purge_expired_revoked_tokens(now),
            "rate_limits": purge_expired_rate_limits(now),
        }
    logger.info("purged as of %s: %s", now.isoformat(), purged)
    return purged


@task_app.periodic(cron="*/10 * * * *", periodic_id="unverified-every-10-min")
@task_app.task(name=UNVERIFIED_TASK, queue=QUEUE_MAINTENANCE, queueing_lock=UNVERIFIED_TASK)
def delete_stale_unverified_accounts(timestamp: int) -> int:
    """Delete accounts still unverified UNVERIFIED_ACCOUNT_DAYS after registration (their
    codes go with them), as of the tick `timestamp`. Safe to re-run."""
    now = datetime.fromtimestamp(timestamp, tz=UTC)
    with app_context():
        deleted = delete_unverified_accounts(now)
    if deleted:
        logger.info("deleted %d accounts left unverified, as of %s", deleted, now.isoformat())
    return deleted

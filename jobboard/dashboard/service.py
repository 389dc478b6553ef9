"""Dashboard numbers: a user's jobs, assigned jobs and bids by status, and queue health.

Each section is one `GROUP BY status` query answered from a two-column index
(`jobs(owner_id, status)`, `jobs(assignee_id, status)`, `bids(bidder_id, status)`), so
its cost grows with the caller's own rows, not with the table.
"""

from __future__ import annotations

from typing import Any

from flask import current_app
from sqlalchemy import func, select, text

from jobboard.autocommit_reads import one_transaction
from jobboard.extensions import db
from jobboard.jobs.service import job_counts_by_status
from jobboard.models import Bid, BidStatus, Job, User, zero_filled
from workers.app import QUEUE_JOBS, QUEUE_MAIL, QUEUE_MAINTENANCE

KNOWN_QUEUES = (QUEUE_JOBS, QUEUE_MAIL, QUEUE_MAINTENANCE)
# Procrastinate's job statuses, without the legacy "aborting" that 3.x never sets.
QUEUE_STATUSES = ("todo", "doing", "succeeded", "failed", "cancelled", "aborted")


def dashboard_for(user: User) -> dict[str, Any]:
    """The caller's counts; admins also get the queue's health."""
    summary: dict[str, Any] = {
        "jobs": _with_total(job_counts_by_status(user.id, Job.owner_id)),
        "assigned": _with_total(job_counts_by_status(user.id, Job.assignee_id)),
        "bids": bid_counts(user.id),
    }
    if user.is_admin:
        summary["queue"] = queue_health()
    return summary


def _with_total(counts: dict[str, int]) -> dict[str, int]:
    return {**counts, "total": sum(counts.values())}


def bid_counts(bidder_id: int) -> dict[str, int]:
    rows = db.session.execute(
        select(Bid.status, func.count()).where(Bid.bidder_id == bidder_id).group_by(Bid.status)
    )
    return zero_filled(BidStatus, rows)


# Procrastinate's tables are read with plain SQL on our own session: the web process
# never opens a Procrastinate pool, and these are read-only questions.
QUEUE_COUNTS_SQL = text(
    "SELECT queue_name, status, count(*) FROM procrastinate_jobs GROUP BY queue_name, status"
)

# A due entry waits since its scheduled time (retries are scheduled too), or, unscheduled,
# since the last event that put it in `todo` (deferred, or retried by the stalled-job
# check). Entries scheduled in the future do not wait yet.
WAITING_SQL = text(
    """
    SELECT count(*) AS waiting,
           EXTRACT(EPOCH FROM now() - min(waiting_since))::float AS oldest_seconds
    FROM (
        SELECT COALESCE(
                   j.scheduled_at,
                   (SELECT max(e.at) FROM procrastinate_events e
                    WHERE e.job_id = j.id
                      AND e.type IN ('deferred', 'deferred_for_retry', 'retried'))
               ) AS waiting_since
        FROM procrastinate_jobs j
        WHERE j.status = 'todo' AND (j.scheduled_at IS NULL OR j.scheduled_at <= now())
    ) AS due
    """
)

LIVE_WORKERS_SQL = text(
    "SELECT count(*) FROM procrastinate_workers "
    "WHERE last_heartbeat > now() - make_interval(secs => :seconds)"
)


def queue_health() -> dict[str, Any]:
    """Queue job counts per queue and status, the backlog of due jobs and its oldest
    member's age in seconds (None when nothing waits), and the workers alive now."""
    queues: dict[str, dict[str, int]] = {
        name: dict.fromkeys(QUEUE_STATUSES, 0) for name in KNOWN_QUEUES
    }
    # One transaction, even in a GET (autocommit), for SET LOCAL to last beyond itself.
    with one_transaction():
        # JIT compilation costs tens of milliseconds and only pays off on long analytical
        # queries; a large backlog's estimate would cross jit_above_cost and trigger it.
        db.session.execute(text("SET LOCAL jit = off"))
        for queue_name, status, count in db.session.execute(QUEUE_COUNTS_SQL):
            queues.setdefault(queue_name, dict.fromkeys(QUEUE_STATUSES, 0))[status] = count
        waiting = db.session.execute(WAITING_SQL).one()
        live_workers = db.session.scalar(
            LIVE_WORKERS_SQL, {"seconds": live_worker_window_seconds()}
        )
    return {
        "queues": queues,
        "waiting": waiting.waiting,
        "oldest_waiting_seconds": (
            None if waiting.oldest_seconds is None else round(waiting.oldest_seconds, 3)
        ),
        "live_workers": live_workers,
    }


def live_worker_window_seconds() -> float:
    """The silence after which the worker itself declares a peer dead (its own setting)."""
    return current_app.config["STALLED_WORKER_SECONDS"]

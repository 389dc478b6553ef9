"""The operations console's rules: the queues' health and pauses, every user's jobs,
bulk actions on them, failures grouped, live workers and the audit log of admins' actions.

Who may call is decided before (admins only, `jobboard.auth.tokens.AdminView`). A bulk
action puts each job through the transition its owner's call uses
(`jobboard.jobs.transitions`: the same `cannot_*` check, the same change), in chunks of
`BULK_CHUNK` jobs, each its own short transaction: the chunk's rows are locked FOR UPDATE
SKIP LOCKED, so a job that a worker or its owner is changing at that moment is passed over
(counted as skipped, like a job whose status does not allow the action), and no chunk
waits for another transaction or holds more than its own rows. A requeue (retry, run now)
is admitted by the owners' quotas once per chunk (`jobboard.quotas.admit_requeues`).
Every change an admin makes is written to the audit log in the transaction that makes it
(a bulk action's totals when it ends).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from flask import current_app
from sqlalchemy import Select, func, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.orm import selectinload

from jobboard import quotas
from jobboard.admin.actions import BulkAction
from jobboard.autocommit_reads import one_transaction
from jobboard.errors import NotFound
from jobboard.extensions import db
from jobboard.jobs import transitions
from jobboard.jobs.service import all_jobs_query, error_first_line, job_filter
from jobboard.locking import for_update
from jobboard.models import AdminAction, Job, JobStatus, QueuePause, User, now_utc
from workers.app import QUEUE_JOBS, QUEUES

BULK_CHUNK = 500
STATS_WINDOW_MINUTES = 60


# --- queues ---------------------------------------------------------------------------

# Per queue, from jobboard_queue_open_idx and jobboard_queue_failed_idx: each count is
# a range of one index. A due entry waits since its scheduled time, or, unscheduled, since
# the event that put it in `todo`; the oldest unscheduled one is the lowest id.
QUEUE_STATE_SQL = text(
    """
    SELECT q.queue_name,
        (SELECT count(*) FROM procrastinate_jobs j WHERE j.queue_name = q.queue_name
            AND j.status = 'todo' AND j.scheduled_at IS NULL)
        + (SELECT count(*) FROM procrastinate_jobs j WHERE j.queue_name = q.queue_name
            AND j.status = 'todo' AND j.scheduled_at <= now()) AS waiting,
        (SELECT count(*) FROM procrastinate_jobs j WHERE j.queue_name = q.queue_name
            AND j.status = 'todo' AND j.scheduled_at > now()) AS scheduled,
        (SELECT count(*) FROM procrastinate_jobs j WHERE j.queue_name = q.queue_name
            AND j.status = 'doing') AS running,
        (SELECT count(*) FROM procrastinate_jobs j WHERE j.queue_name = q.queue_name
            AND j.status = 'failed') AS failed_entries,
        LEAST(
            (SELECT min(j.scheduled_at) FROM procrastinate_jobs j
              WHERE j.queue_name = q.queue_name AND j.status = 'todo'
                AND j.scheduled_at <= now()),
            (SELECT max(e.at) FROM procrastinate_events e
              WHERE e.job_id = (SELECT min(j.id) FROM procrastinate_jobs j
                                 WHERE j.queue_name = q.queue_name AND j.status = 'todo'
                                   AND j.scheduled_at IS NULL)
                AND e.type IN ('deferred', 'deferred_for_retry', 'retried'))
        ) AS waiting_since,
        p.paused_at
    FROM unnest(CAST(:queues AS text[])) WITH ORDINALITY AS q(queue_name, position)
    LEFT JOIN queue_pauses p ON p.queue_name = q.queue_name
    ORDER BY q.position
    """
)

# The queue entries that finished in the last hour, each with its start and the time it
# was due (jobboard_events_timed_idx: the finishes and the starts are two index ranges,
# hashed together): per queue and minute how many finished, and per queue the
# percentiles of lateness (start - due) and duration (finish - start), in seconds. An
# entry is due at its scheduled time, or, unscheduled, when it was deferred (looked up
# only for those). Starts are read back to an hour before the window: an entry that ran
# longer than that counts in the throughput, not in the percentiles.
QUEUE_STATS_SQL = text(
    """
    WITH started AS (
        SELECT job_id, max(at) AS started_at FROM procrastinate_events
         WHERE type = 'started' AND at > now() - make_interval(mins => :minutes + 60)
         GROUP BY job_id
    ), timed AS MATERIALIZED (
        SELECT q.queue_name,
               LEAST(:minutes - 1, GREATEST(0,
                   floor(date_part('epoch', now() - e.at) / 60)))::int AS minutes_ago,
               date_part('epoch', e.at - s.started_at) AS duration,
               date_part('epoch', s.started_at - COALESCE(
                   q.scheduled_at,
                   (SELECT max(d.at) FROM procrastinate_events d
                     WHERE d.job_id = e.job_id
                       AND d.type IN ('deferred', 'deferred_for_retry', 'retried'))
               )) AS lateness
          FROM procrastinate_events e
          JOIN procrastinate_jobs q ON q.id = e.job_id
          LEFT JOIN started s ON s.job_id = e.job_id
         WHERE e.type IN ('succeeded', 'failed', 'aborted')
           AND e.at > now() - make_interval(mins => :minutes)
    )
    SELECT queue_name, minutes_ago, count(*) AS finished,
           NULL::float AS lateness_p50, NULL::float AS lateness_p99,
           NULL::float AS duration_p50, NULL::float AS duration_p99
      FROM timed GROUP BY queue_name, minutes_ago
    UNION ALL
    -- (|x| + x) / 2 is max(x, 0) with NULL kept: a start a hair before its time is on time.
    SELECT queue_name, NULL, count(*),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY abs(lateness) + lateness) / 2,
           percentile_cont(0.99) WITHIN GROUP (ORDER BY abs(lateness) + lateness) / 2,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY duration),
           percentile_cont(0.99) WITHIN GROUP (ORDER BY duration)
      FROM timed GROUP BY queue_name
    """
)


def known_queues() -> list[str]:
    return list(QUEUES)


def queues() -> list[dict[str, Any]]:
    """Every queue's health now and over the last hour (GET /api/admin/queues/)."""
    names = known_queues()
    minutes = STATS_WINDOW_MINUTES
    with one_transaction():
        # JIT compilation costs tens of milliseconds and pays off only on long analytical
        # queries; a large backlog's estimate would cross jit_above_cost (dashboard too).
        db.session.execute(text("SET LOCAL jit = off"))
        state = db.session.execute(QUEUE_STATE_SQL, {"queues": names}).all()
        stats = db.session.execute(QUEUE_STATS_SQL, {"minutes": minutes}).all()
        failed_jobs = db.session.scalar(
            select(func.count()).select_from(Job).where(Job.status == JobStatus.FAILED)
        )
        now = db.session.scalar(select(func.now()))
    per_minute: dict[str, list[int]] = {name: [0] * minutes for name in names}
    percentiles: dict[str, Any] = {}
    for row in stats:
        if row.queue_name not in per_minute:
            continue
        if row.minutes_ago is None:
            percentiles[row.queue_name] = row
        else:
            # Oldest minute first, the current one last.
            per_minute[row.queue_name][minutes - 1 - row.minutes_ago] = row.finished
    answer = []
    for row in state:
        stat = percentiles.get(row.queue_name)
        answer.append(
            {
                "name": row.queue_name,
                "waiting": row.waiting,
                "scheduled": row.scheduled,
                "running": row.running,
                # The jobs queue's failures are jobs' (an attempt's failure is the job's,
                # not the queue entry's); the other queues' are their failed entries.
                "failed": failed_jobs if row.queue_name == QUEUE_JOBS else row.failed_entries,
                "oldest_waiting_seconds": (
                    None
                    if row.waiting_since is None
                    else max(0, round((now - row.waiting_since).total_seconds()))
                ),
                "paused": row.paused_at is not None,
                "paused_at": row.paused_at,
                "finished_per_minute": per_minute[row.queue_name],
                "finished_last_hour": sum(per_minute[row.queue_name]),
                "lateness_p50": _seconds(stat, "lateness_p50"),
                "lateness_p99": _seconds(stat, "lateness_p99"),
                "duration_p50": _seconds(stat, "duration_p50"),
                "duration_p99": _seconds(stat, "duration_p99"),
            }
        )
    return answer


def _seconds(row: Any, column: str) -> float | None:
    value = None if row is None else getattr(row, column)
    return None if value is None else round(value, 3)


def _known_queue(name: str) -> str:
    if name not in known_queues():
        raise NotFound(f"No queue named {name!r}. Queues: {', '.join(known_queues())}.")
    return name


def pause_queue(admin: User, name: str) -> dict[str, Any]:
    """Pause queue `name`: no worker fetches its waiting entries until it is resumed (the
    fetch reads queue_pauses; migrations/sql/operations_0012.sql); running ones finish.
    Pausing a paused queue changes nothing but is logged too."""
    _known_queue(name)
    db.session.execute(
        pg_insert(QueuePause)
        .values(queue_name=name, paused_by=admin.id, paused_at=now_utc())
        .on_conflict_do_nothing(index_elements=[QueuePause.queue_name])
    )
    _audit((admin.id, admin.email), "pause", {"queue": name})
    db.session.commit()
    return _queue_state(name)


def resume_queue(admin: User, name: str) -> dict[str, Any]:
    """Resume queue `name`: workers fetch from it again at their next fetch."""
    _known_queue(name)
    db.session.query(QueuePause).filter(QueuePause.queue_name == name).delete()
    _audit((admin.id, admin.email), "resume", {"queue": name})
    db.session.commit()
    return _queue_state(name)


def _queue_state(name: str) -> dict[str, Any]:
    return next(queue for queue in queues() if queue["name"] == name)


# --- jobs -----------------------------------------------------------------------------


def jobs_query(filters: Mapping[str, Any]) -> Select[tuple[Job]]:
    """Every user's jobs matching the list's filters, `owner` and `error` too."""
    return all_jobs_query(filters).options(selectinload(Job.owner))


def job_detail(job_id: int) -> dict[str, Any]:
    """Any user's job, with its owner, its result and its attempts."""
    job = db.session.get(Job, job_id, options=[selectinload(Job.owner), selectinload(Job.result)])
    if job is None:
        raise NotFound(f"Job {job_id} not found.")
    return {"job": job, "result": job.result, "attempts": attempts_of(job)}


def attempts_of(job: Job) -> list[Any]:
    """Every attempt of the job so far, oldest first. The hook where the per-attempt
    history plugs in; until it exists, nothing."""
    return []


# --- bulk actions ---------------------------------------------------------------------

# Per action: why a job cannot take it (the owner's call's own check), and the change.
_ACTIONS: dict[str, tuple[Callable[[Job], str | None], Callable[[Sequence[Job]], None]]] = {
    BulkAction.RETRY: (transitions.cannot_retry, transitions.retry_locked),
    BulkAction.CANCEL: (transitions.cannot_cancel, transitions.cancel_locked),
    BulkAction.RUN_NOW: (transitions.cannot_run_now, transitions.run_now_locked),
}


def bulk_action(
    admin: User,
    action: str,
    *,
    ids: Sequence[int] | None = None,
    filters: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Put every job of `ids` (any user's), or every job matching `filters`, through
    `action`'s transition, a chunk at a time in id order (see the module's docstring).
    Returns how many jobs `matched`, how many `changed`, how many were `skipped` (their
    status did not allow it, their owner's quota was full, or they were being changed by
    somebody else at that moment)."""
    who = (admin.id, admin.email)  # read now: the chunks' commits expire the object
    if ids is not None:
        criteria = [Job.id.in_(sorted(set(ids)))]
        target: dict[str, Any] = {"ids": sorted(set(ids))}
    else:
        assert filters is not None
        criteria = job_filter(filters)
        target = {"filter": _json_filter(filters)}
    # The scan and each chunk are short transactions of their own (committed below).
    db.session.commit()
    matched = changed = 0
    after = 0
    while True:
        chunk = list(
            db.session.scalars(
                select(Job.id).where(*criteria, Job.id > after).order_by(Job.id).limit(BULK_CHUNK)
            )
        )
        if not chunk:
            break
        after = chunk[-1]
        matched += len(chunk)
        changed += _apply_to_chunk(action, chunk)
    counts = {"matched": matched, "changed": changed, "skipped": matched - changed}
    _audit(who, str(action), target, counts)
    db.session.commit()
    return counts


def _apply_to_chunk(action: str, job_ids: Sequence[int]) -> int:
    """Lock what is free of the chunk, put each job that can take `action` through its
    transition, commit; how many changed."""
    cannot, change = _ACTIONS[action]
    try:
        jobs = list(
            db.session.scalars(
                for_update(
                    select(Job).where(Job.id.in_(job_ids)).order_by(Job.id), skip_locked=True
                )
            )
        )
        ready = [job for job in jobs if cannot(job) is None]
        if action != BulkAction.CANCEL:
            ready = quotas.admit_requeues(ready, retry=action == BulkAction.RETRY)
        if ready:
            change(ready)
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise
    return len(ready)


BULK_FILTER_NAMES = (
    "status",
    "kind",
    "scheduled_after",
    "scheduled_before",
    "created_after",
    "created_before",
    "q",
    "owner",
    "error",
)


def _json_filter(filters: Mapping[str, Any]) -> dict[str, Any]:
    def plain(value: Any) -> Any:
        if isinstance(value, datetime | date):
            return value.isoformat()
        if isinstance(value, list | tuple):
            return [plain(item) for item in value]
        return value

    return {key: plain(value) for key, value in filters.items() if key in BULK_FILTER_NAMES}


# --- failures, workers, audit --------------------------------------------------------


def failures_query() -> Select[Any]:
    """Failed jobs grouped by kind and their error's first line, the largest group first."""
    first_line = error_first_line(Job.last_error)
    return (
        select(
            Job.kind.label("kind"),
            first_line.label("error"),
            func.count().label("count"),
            func.min(Job.finished_at).label("first_seen"),
            func.max(Job.finished_at).label("last_seen"),
        )
        .where(Job.status == JobStatus.FAILED)
        .group_by(Job.kind, first_line)
        .order_by(func.count().desc(), Job.kind, first_line)
    )


LIVE_WORKERS_SQL = text(
    """
    SELECT w.id, s.started_at, w.last_heartbeat
      FROM procrastinate_workers w
      LEFT JOIN worker_starts s ON s.worker_id = w.id
     WHERE w.last_heartbeat > now() - make_interval(secs => :seconds)
     ORDER BY w.id
    """
)
RUNNING_SQL = text(
    """
    SELECT j.worker_id, j.id, j.queue_name, j.task_name, (j.args->>'job_id')::bigint AS job_id,
           (SELECT max(e.at) FROM procrastinate_events e
             WHERE e.job_id = j.id AND e.type = 'started') AS started_at
      FROM procrastinate_jobs j
     WHERE j.status = 'doing' AND j.worker_id = ANY(:workers)
     ORDER BY j.id
    """
)


def live_workers() -> list[dict[str, Any]]:
    """Workers that heartbeated within STALLED_WORKER_SECONDS, with what they run."""
    seconds = float(current_app.config["STALLED_WORKER_SECONDS"])
    with one_transaction():
        workers = db.session.execute(LIVE_WORKERS_SQL, {"seconds": seconds}).all()
        running = db.session.execute(RUNNING_SQL, {"workers": [w.id for w in workers]}).all()
    by_worker: dict[int, list[dict[str, Any]]] = {w.id: [] for w in workers}
    for entry in running:
        by_worker[entry.worker_id].append(
            {
                "queue_job_id": entry.id,
                "queue": entry.queue_name,
                "task": entry.task_name,
                "job_id": entry.job_id,
                "started_at": entry.started_at,
            }
        )
    return [
        {
            "id": w.id,
            "started_at": w.started_at,
            "last_heartbeat": w.last_heartbeat,
            "running": by_worker[w.id],
        }
        for w in workers
    ]


def audit_query() -> Select[tuple[AdminAction]]:
    return select(AdminAction).order_by(AdminAction.id.desc())


def _audit(
    who: tuple[int, str],
    action: str,
    target: dict[str, Any],
    counts: Mapping[str, int] | None = None,
) -> None:
    counts = counts or {}
    db.session.add(
        AdminAction(
            admin_id=who[0],
            admin_email=who[1],
            action=action,
            target=target,
            matched=counts.get("matched"),
            changed=counts.get("changed"),
            skipped=counts.get("skipped"),
            created_at=now_utc(),
        )
    )

"""GET /metrics: Prometheus's text format, through prometheus_client.

Two sources, each chosen for being right with several web and several worker processes,
on as many machines:

- What the web processes see themselves (HTTP requests by route, method and status) is
  a histogram in prometheus_client's multiprocess mode: each gunicorn worker writes its
  values to files in PROMETHEUS_MULTIPROC_DIR (gunicorn.conf.py makes and cleans that
  folder), and a scrape, whichever worker answers it, sums every worker's files.
- What the queue does (jobs by status, waiting entries, attempts and their durations and
  lateness, webhook deliveries, live workers) happens in worker processes that may run
  on other machines, and the web cannot read their memory: it is computed from
  PostgreSQL when scraped (`DatabaseCollector`), in one statement. Counters and
  histograms of finished attempts come from running totals kept in `metric_rollups`:
  a scrape adds what finished since the totals' watermark and moves it forward, so every
  process answers the same, monotonic totals, and a scrape reads only the attempts of
  the last few seconds, whatever the size of the tables (at most CATCH_UP_BATCH a
  scrape: after an upgrade over a long history the totals catch up over several
  scrapes). Counts trail by METRICS_SETTLE_SECONDS, the time an attempt's finishing
  transaction may take to commit.
  Gauges read indexes (open jobs, due queue entries, pending deliveries); finished jobs
  and deliveries are counted exactly up to EXACT_COUNT_BELOW rows, and above it estimated
  from the planner's statistics (kept by autovacuum's ANALYZE), as a count of a million
  rows would cost a scrape tens of milliseconds.

Every scrape statement runs under a statement timeout of SCRAPE_TIMEOUT_MS; PostgreSQL
unreachable answers 503 (jobboard.errors), within the connect timeout.
"""

from __future__ import annotations

import hmac
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Flask, Response, abort, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Histogram,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from sqlalchemy import text

from jobboard.autocommit_reads import one_transaction
from jobboard.errors import Unauthorized
from jobboard.extensions import db
from workers.app import QUEUE_JOBS, QUEUE_MAIL, QUEUE_MAINTENANCE, QUEUE_WEBHOOKS

KNOWN_QUEUES = (QUEUE_JOBS, QUEUE_MAIL, QUEUE_MAINTENANCE, QUEUE_WEBHOOKS)
SCRAPE_TIMEOUT_MS = 2000
# A scrape adds at most this many finished attempts (and webhook attempts) to the totals:
# after an upgrade, or a long time without scrapes, the totals catch up over several
# scrapes instead of one that would pass the statement timeout.
CATCH_UP_BATCH = 50_000
# Tables with fewer rows than this (the planner's estimate) are counted exactly.
EXACT_COUNT_BELOW = 100_000
# Upper bounds of the histograms' buckets, in seconds.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
LATENESS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)

# The web's own histogram. In multiprocess mode (PROMETHEUS_MULTIPROC_DIR set before
# prometheus_client was imported) its values live in that folder's files; otherwise in
# this process, in this registry.
_local_registry = CollectorRegistry()
http_request_duration = Histogram(
    "jobboard_http_request_duration_seconds",
    "HTTP requests served, by route (the URL rule), method and status.",
    ["route", "method", "status"],
    buckets=HTTP_BUCKETS,
    registry=_local_registry,
)


def init_app(app: Flask) -> None:
    """GET /metrics, and the request histogram fed by every request."""
    app.after_request(_observe_request)
    app.add_url_rule("/metrics", "metrics", scrape, methods=["GET"], strict_slashes=False)


def _observe_request(response: Response) -> Response:
    started = g.get("request_started")
    if started is not None:
        rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
        http_request_duration.labels(rule, request.method, str(response.status_code)).observe(
            time.perf_counter() - started
        )
    return response


def scrape() -> Response:
    """The metrics, for a caller with `Authorization: Bearer $METRICS_TOKEN`."""
    token = current_app.config.get("METRICS_TOKEN")
    if not token:
        abort(404)
    given = request.headers.get("Authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise Unauthorized(
            "GET /metrics needs Authorization: Bearer with METRICS_TOKEN.",
            headers={"WWW-Authenticate": "Bearer"},
        )
    registry = CollectorRegistry()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        MultiProcessCollector(registry)
    else:
        registry.register(_LocalCollector())
    registry.register(DatabaseCollector(read_queue_state()))
    return Response(generate_latest(registry), mimetype=None, content_type=CONTENT_TYPE_LATEST)


class _LocalCollector(Collector):
    def collect(self) -> Iterable[Metric]:
        return _local_registry.collect()


# --- what PostgreSQL knows ------------------------------------------------------------------


def _bucket_counts(column: str, bounds_s: Iterable[float]) -> str:
    """SQL: an array of how many rows have `column` (ms) at most each bound."""
    return (
        "ARRAY["
        + ", ".join(f"count(*) FILTER (WHERE {column} <= {bound * 1000:g})" for bound in bounds_s)
        + "]"
    )


_OPEN = "('pending', 'in_progress')"

# Rows by status: those of `open_statuses` counted exactly (an index holds them), the
# others too while the table is small, else estimated from the planner's statistics.
_BY_STATUS = """
    SELECT json_object_agg(status, n) FROM (
        SELECT status, count(*)::float8 AS n FROM {table}
        WHERE status IN {open} GROUP BY status
        UNION ALL
        SELECT status, count(*)::float8 FROM {table}
        WHERE status NOT IN {open}
          AND (SELECT reltuples FROM pg_class WHERE oid = '{table}'::regclass) < :exact_below
        GROUP BY status
        UNION ALL
        SELECT v.status, round(c.reltuples * v.freq)::float8
        FROM pg_class c, pg_stats s,
             unnest(s.most_common_vals::text::text[], s.most_common_freqs) AS v(status, freq)
        WHERE c.oid = '{table}'::regclass AND c.reltuples >= :exact_below
          AND s.schemaname = current_schema() AND s.tablename = '{table}'
          AND s.attname = 'status' AND v.status NOT IN {open}
    ) AS counted
"""

SCRAPE_SQL = text(
    f"""
    WITH start AS (SELECT COALESCE(CAST(:since AS timestamptz), '-infinity') AS since),
    bounds AS (
        SELECT s.since,
               LEAST(
                   statement_timestamp() - make_interval(secs => :settle),
                   (SELECT a.finished_at FROM job_attempts a WHERE a.finished_at > s.since
                    ORDER BY a.finished_at OFFSET :batch LIMIT 1),
                   (SELECT w.attempted_at FROM webhook_attempts w
                    WHERE w.attempted_at > s.since
                    ORDER BY w.attempted_at OFFSET :batch LIMIT 1)
               ) AS until,
               statement_timestamp() AS at
        FROM start AS s
    )
    SELECT
        (SELECT until FROM bounds) AS until,
        ({_BY_STATUS.format(table="jobs", open=_OPEN)}) AS jobs,
        ({_BY_STATUS.format(table="webhook_deliveries", open="('pending')")}) AS deliveries,
        (SELECT json_agg(json_build_array(q.queue_name, q.waiting, EXTRACT(EPOCH FROM
             (SELECT at FROM bounds) - LEAST(q.oldest_scheduled, (
                 SELECT max(e.at) FROM procrastinate_events e
                 WHERE e.job_id = q.oldest_unscheduled
                   AND e.type IN ('deferred', 'deferred_for_retry', 'retried'))))))
         FROM (
             SELECT queue_name, count(*) AS waiting, min(scheduled_at) AS oldest_scheduled,
                    min(id) FILTER (WHERE scheduled_at IS NULL) AS oldest_unscheduled
             FROM procrastinate_jobs
             WHERE status = 'todo'
               AND (scheduled_at IS NULL OR scheduled_at <= (SELECT at FROM bounds))
             GROUP BY queue_name
         ) AS q) AS queues,
        (SELECT count(*) FROM procrastinate_workers
         WHERE last_heartbeat > (SELECT at FROM bounds) - make_interval(secs => :live_seconds))
            AS workers,
        (SELECT json_agg(json_build_array(kind, outcome, n, duration_n, duration_ms,
                                          duration_buckets, lateness_n, lateness_ms,
                                          lateness_buckets))
         FROM (
             SELECT kind, outcome, count(*) AS n,
                    count(duration_ms) AS duration_n,
                    COALESCE(sum(duration_ms), 0) AS duration_ms,
                    {_bucket_counts("duration_ms", DURATION_BUCKETS)} AS duration_buckets,
                    count(lateness_ms) AS lateness_n,
                    COALESCE(sum(lateness_ms), 0) AS lateness_ms,
                    {_bucket_counts("lateness_ms", LATENESS_BUCKETS)} AS lateness_buckets
             FROM (
                 SELECT COALESCE(a.kind, 'unknown') AS kind, a.outcome, a.duration_ms,
                        GREATEST(0, EXTRACT(EPOCH FROM a.started_at - a.due_at) * 1000)
                            AS lateness_ms
                 FROM job_attempts a, bounds b
                 WHERE a.finished_at > b.since AND a.finished_at <= b.until
             ) AS finished
             GROUP BY kind, outcome
         ) AS per_kind) AS attempts,
        (SELECT json_object_agg(outcome, n) FROM (
             SELECT CASE WHEN w.response_status BETWEEN 200 AND 299 THEN 'success'
                         ELSE 'failure' END AS outcome,
                    count(*) AS n
             FROM webhook_attempts w, bounds b
             WHERE w.attempted_at > b.since AND w.attempted_at <= b.until
             GROUP BY 1
         ) AS tried) AS webhook_attempts
    """
)

_LOCK_TOTALS = text(
    "SELECT watermark, data FROM metric_rollups WHERE name = 'totals' FOR UPDATE SKIP LOCKED"
)
_READ_TOTALS = text("SELECT watermark, data FROM metric_rollups WHERE name = 'totals'")
_WRITE_TOTALS = text(
    "UPDATE metric_rollups SET watermark = :watermark, data = CAST(:data AS jsonb)"
    " WHERE name = 'totals'"
)
_BOUND_SCRAPE = text(
    "SELECT set_config('statement_timeout', :timeout, true), set_config('jit', 'off', true)"
)

# Scrapes of one process take their turn: the totals' row is locked by one at a time.
_scrape_lock = threading.Lock()


def read_queue_state() -> dict[str, Any]:
    """Everything the metrics read from PostgreSQL, the running totals moved forward to
    what finished until METRICS_SETTLE_SECONDS ago (one transaction)."""
    config = current_app.config
    with _scrape_lock, one_transaction():
        db.session.execute(_BOUND_SCRAPE, {"timeout": str(SCRAPE_TIMEOUT_MS)})
        locked = db.session.execute(_LOCK_TOTALS).first()
        # Another process is moving the totals forward: read them as last committed.
        totals_row = locked or db.session.execute(_READ_TOTALS).one()
        state = dict(
            db.session.execute(
                SCRAPE_SQL,
                {
                    "since": totals_row.watermark,
                    "settle": float(config["METRICS_SETTLE_SECONDS"]),
                    "live_seconds": float(config["STALLED_WORKER_SECONDS"]),
                    "exact_below": EXACT_COUNT_BELOW,
                    "batch": CATCH_UP_BATCH,
                },
            )
            .one()
            ._mapping
        )
        totals = dict(totals_row.data)
        if locked is not None:
            totals = add_finished(totals, state["attempts"] or [], state["webhook_attempts"])
            db.session.execute(
                _WRITE_TOTALS, {"watermark": state["until"], "data": json.dumps(totals)}
            )
    state["totals"] = totals
    return state


def add_finished(
    totals: dict[str, Any], attempts: list[list[Any]], webhook_attempts: dict[str, int] | None
) -> dict[str, Any]:
    """The running totals with the attempts finished in the last window added."""
    counts = dict(totals.get("attempts", {}))
    durations = dict(totals.get("duration", {}))
    lateness = dict(totals.get("lateness") or _empty_histogram(LATENESS_BUCKETS))
    for kind, outcome, n, d_n, d_ms, d_buckets, l_n, l_ms, l_buckets in attempts:
        key = f"{kind}\t{outcome}"
        counts[key] = counts.get(key, 0) + n
        durations[kind] = _added(durations.get(kind), d_n, d_ms, d_buckets, DURATION_BUCKETS)
        lateness = _added(lateness, l_n, l_ms, l_buckets, LATENESS_BUCKETS)
    webhooks = dict(totals.get("webhook_attempts", {}))
    for outcome, n in (webhook_attempts or {}).items():
        webhooks[outcome] = webhooks.get(outcome, 0) + n
    return {
        "attempts": counts,
        "duration": durations,
        "lateness": lateness,
        "webhook_attempts": webhooks,
    }


def _empty_histogram(bounds: tuple[float, ...]) -> dict[str, Any]:
    return {"count": 0, "sum_ms": 0.0, "buckets": [0] * len(bounds)}


def _added(
    histogram: dict[str, Any] | None,
    count: int,
    sum_ms: float,
    buckets: list[int],
    bounds: tuple[float, ...],
) -> dict[str, Any]:
    base = histogram or _empty_histogram(bounds)
    return {
        "count": base["count"] + count,
        "sum_ms": base["sum_ms"] + float(sum_ms),
        "buckets": [a + b for a, b in zip(base["buckets"], buckets, strict=True)],
    }


class DatabaseCollector(Collector):
    """The metrics computed from PostgreSQL for one scrape (`read_queue_state`)."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        state, totals = self.state, self.state["totals"]
        jobs = GaugeMetricFamily(
            "jobboard_jobs",
            "Jobs by status: pending and in_progress counted; the finished statuses counted "
            f"while the table has under {EXACT_COUNT_BELOW} rows, else estimated from the "
            "planner's statistics.",
            labels=["status"],
        )
        for status, n in sorted((state["jobs"] or {}).items()):
            jobs.add_metric([status], n)
        yield jobs

        waiting = GaugeMetricFamily(
            "jobboard_queue_waiting",
            "Queue entries due and not started, per queue.",
            labels=["queue"],
        )
        oldest = GaugeMetricFamily(
            "jobboard_queue_oldest_waiting_seconds",
            "How long the oldest due entry of each queue has waited (0: none waits).",
            labels=["queue"],
        )
        per_queue = {name: (0, 0.0) for name in KNOWN_QUEUES}
        for name, count, age in state["queues"] or []:
            per_queue[name] = (count, max(0.0, age or 0.0))
        for name, (count, age) in sorted(per_queue.items()):
            waiting.add_metric([name], count)
            oldest.add_metric([name], age)
        yield waiting
        yield oldest

        finished = CounterMetricFamily(
            "jobboard_job_attempts_finished",
            "Attempts of jobs finished, by kind and outcome (completed, failed, lost). A "
            "job's last attempt decides its status.",
            labels=["kind", "outcome"],
        )
        for key, n in sorted(totals.get("attempts", {}).items()):
            kind, outcome = key.split("\t")
            finished.add_metric([kind, outcome], n)
        yield finished

        duration = HistogramMetricFamily(
            "jobboard_job_duration_seconds",
            "How long finished attempts ran, by kind.",
            labels=["kind"],
        )
        for kind, histogram in sorted(totals.get("duration", {}).items()):
            duration.add_metric([kind], *_buckets(histogram, DURATION_BUCKETS))
        yield duration

        lateness = HistogramMetricFamily(
            "jobboard_job_lateness_seconds",
            "How late finished attempts started: start minus the time they were due.",
        )
        lateness.add_metric(
            [],
            *_buckets(
                totals.get("lateness") or _empty_histogram(LATENESS_BUCKETS), LATENESS_BUCKETS
            ),
        )
        yield lateness

        deliveries = GaugeMetricFamily(
            "jobboard_webhook_deliveries",
            "Webhook deliveries by status (pending, succeeded, failed); counted or "
            "estimated as jobboard_jobs is.",
            labels=["status"],
        )
        for status in ("pending", "succeeded", "failed"):
            deliveries.add_metric([status], (state["deliveries"] or {}).get(status, 0))
        yield deliveries

        attempts = CounterMetricFamily(
            "jobboard_webhook_attempts",
            "Webhook delivery attempts by outcome: success (a 2xx answer) or failure.",
            labels=["outcome"],
        )
        for outcome in ("success", "failure"):
            attempts.add_metric([outcome], totals.get("webhook_attempts", {}).get(outcome, 0))
        yield attempts

        yield GaugeMetricFamily(
            "jobboard_workers_live",
            "Worker processes' Procrastinate workers that heartbeated within "
            "STALLED_WORKER_SECONDS.",
            value=state["workers"],
        )


def _buckets(
    histogram: dict[str, Any], bounds: tuple[float, ...]
) -> tuple[list[tuple[str, float]], float]:
    cumulative = [(f"{bound:g}", n) for bound, n in zip(bounds, histogram["buckets"], strict=True)]
    cumulative.append(("+Inf", histogram["count"]))
    return cumulative, histogram["sum_ms"] / 1000

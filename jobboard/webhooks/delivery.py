"""Delivering an endpoint's events: what the `deliver_webhooks` task does, on the worker's
event loop and its autocommit pool.

Each enabled endpoint with deliveries due has one waiting queue entry at most, and one
running (the entry's queueing lock and lock, set by `jobboard_wake_webhook_endpoint` in
SQL). A run claims the endpoint's due deliveries a group at a time (a lease, so that a run
killed mid-delivery leaves them to the next one; a group no larger than the endpoint
answers within the lease's margin), sends at most IN_FLIGHT at once over the endpoint's
own kept-alive connections (`jobboard.webhooks.client`), writes the outcomes by the
group in one statement, waits LINGER_SECONDS for more once nothing is due (unless another
endpoint's run waits for a slot), stops starting new sends after RUN_SECONDS, and leaves
a waiting entry for the earliest next attempt. A dead or slow endpoint therefore holds
one slot of the `webhooks` queue at most, and delays only itself.

An attempt succeeds on a 2xx answer within WEBHOOK_TIMEOUT_SECONDS; redirects are not
followed. 410 disables the endpoint at once; a 429 or 503 with a valid `Retry-After`
delays the next attempt at least that long (at most MAX_RETRY_AFTER_SECONDS). A failed
attempt is retried after WEBHOOK_RETRY_SCHEDULE's next wait, ±10 % jitter; after the last
one the delivery is failed, and the endpoint is disabled if it has had no success for
WEBHOOK_DISABLE_AFTER_SECONDS (a `webhook.disabled` event and its email). The answer's
status, its body's first 1 KiB (nothing more is read) and the time taken are kept per
attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import random
import ssl
import time
import weakref
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from types import SimpleNamespace
from typing import Any

import certifi
import httpx

from jobboard.events.outbox import build_event, envelope, public_id, write_events_async
from jobboard.models import DeliveryStatus
from jobboard.webhooks import signing
from jobboard.webhooks.client import Answer, EndpointConnections, ExchangeError
from jobboard.webhooks.targets import RefusedTarget, parse_url
from workers.app import QUEUE_WEBHOOKS, webhook_endpoint_lock

logger = logging.getLogger(__name__)

IN_FLIGHT = 2
# The most deliveries one claim takes, and one statement writes the outcomes of.
CLAIM = 32
RECORD_BATCH = 32
# An outcome waits at most this long for others to share its statement.
RECORD_DELAY_SECONDS = 0.2
RUN_SECONDS = 10.0
# A run with nothing left waits this long for more before it ends (`EndpointRun._linger`).
LINGER_SECONDS = 0.05
BODY_LIMIT = 1024
MAX_RETRY_AFTER_SECONDS = 3600
JITTER = 0.10
# A claimed delivery is another run's once its lease has passed.
LEASE_MARGIN_SECONDS = 5.0
GONE = "gone"
FAILING = "failing"


@dataclass(frozen=True)
class DeliverySettings:
    timeout: float
    schedule: tuple[float, ...]
    disable_after: float
    allow_private: bool
    ca_bundle: str | None
    secret_key: str
    run_seconds: float = RUN_SECONDS

    @classmethod
    def from_config(cls, config: Any) -> DeliverySettings:
        return cls(
            timeout=float(config.WEBHOOK_TIMEOUT_SECONDS),
            schedule=parse_schedule(config.WEBHOOK_RETRY_SCHEDULE),
            disable_after=float(config.WEBHOOK_DISABLE_AFTER_SECONDS),
            allow_private=bool(config.WEBHOOK_ALLOW_PRIVATE_URLS),
            ca_bundle=config.WEBHOOK_CA_BUNDLE,
            secret_key=config.SECRET_KEY,
        )


def parse_schedule(value: str) -> tuple[float, ...]:
    """WEBHOOK_RETRY_SCHEDULE: seconds between attempts, comma-separated."""
    waits = tuple(float(part) for part in value.split(",") if part.strip())
    if any(wait < 0 for wait in waits):
        raise ValueError("WEBHOOK_RETRY_SCHEDULE holds a negative wait")
    return waits


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """Seconds asked by a `Retry-After` header (delta-seconds or an HTTP date), at most
    MAX_RETRY_AFTER_SECONDS; None for a missing or invalid one."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(int(value))
    else:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment is None or moment.tzinfo is None:
            return None
        seconds = (moment - now).total_seconds()
        if seconds < 0:
            return None
    return min(seconds, MAX_RETRY_AFTER_SECONDS)


def next_attempt_at(
    round_attempts: int,
    now: datetime,
    schedule: Sequence[float],
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> datetime | None:
    """When to try again after the `round_attempts`-th attempt of a round failed; None
    when that was the last one."""
    if round_attempts > len(schedule):
        return None
    wait = schedule[round_attempts - 1] * (rng or random).uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None:
        wait = max(wait, retry_after)
    return now + timedelta(seconds=wait)


@dataclass
class Claimed:
    delivery_id: int
    round_attempts: int
    message_id: str
    body: bytes


@dataclass
class Outcome:
    delivery_id: int
    round_attempts: int
    attempted_at: datetime
    duration_ms: int
    response_status: int | None = None
    response_body: str | None = None
    error: str | None = None
    retry_after: float | None = None

    @property
    def succeeded(self) -> bool:
        return self.response_status is not None and 200 <= self.response_status < 300

    @property
    def gone(self) -> bool:
        return self.response_status == 410


# --- the HTTP side ------------------------------------------------------------------------

# Idle endpoint pools kept per event loop beyond the ones in use (the least recently used go).
KEPT_POOLS = 64
KEEPALIVE_SECONDS = 30.0


@functools.cache
def _ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    """One context per process and CA bundle, shared by every endpoint's client (building
    one loads the CA store: milliseconds)."""
    context = ssl.create_default_context(cafile=certifi.where())
    if ca_bundle:
        context.load_verify_locations(ca_bundle)
    return context


class _Pools:
    """An event loop's connections, one `EndpointConnections` per endpoint: they stay
    open between attempts and runs (keep-alive), at most IN_FLIGHT of them, and no
    endpoint's connections are ever another's."""

    def __init__(self) -> None:
        self.pools: OrderedDict[PoolKey, EndpointConnections] = OrderedDict()
        self.in_use: Counter[PoolKey] = Counter()

    @contextlib.asynccontextmanager
    async def lease(
        self, endpoint_id: int, settings: DeliverySettings
    ) -> AsyncIterator[EndpointConnections]:
        key = (endpoint_id, settings.allow_private, settings.ca_bundle)
        pool = self.pools.get(key)
        if pool is None:
            pool = self.pools[key] = EndpointConnections(
                _ssl_context(settings.ca_bundle), settings.allow_private, KEEPALIVE_SECONDS
            )
        self.pools.move_to_end(key)
        self.in_use[key] += 1
        try:
            yield pool
        finally:
            self.in_use[key] -= 1
            if not self.in_use[key]:
                del self.in_use[key]
            await self._trim()

    async def _trim(self) -> None:
        idle = [key for key in self.pools if key not in self.in_use]
        for key in idle[: max(0, len(idle) - KEPT_POOLS)]:
            await self.pools.pop(key).aclose()

    async def close(self) -> None:
        while self.pools:
            await self.pools.popitem()[1].aclose()


PoolKey = tuple[int, bool, str | None]
_loops: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pools] = weakref.WeakKeyDictionary()


def endpoint_pool(
    endpoint_id: int, settings: DeliverySettings
) -> contextlib.AbstractAsyncContextManager[EndpointConnections]:
    """`async with endpoint_pool(id, settings) as pool`: the endpoint's connections on this
    event loop, kept for its next run."""
    pools = _loops.setdefault(asyncio.get_running_loop(), _Pools())
    return pools.lease(endpoint_id, settings)


async def close_clients() -> None:
    """Close this event loop's connections (before the loop itself is closed)."""
    pools = _loops.pop(asyncio.get_running_loop(), None)
    if pools is not None:
        await pools.close()


def target_of(url: str, settings: DeliverySettings) -> httpx.URL | RefusedTarget:
    """The endpoint's URL, parsed once for a run, or why no attempt may go to it."""
    try:
        return parse_url(url, settings.allow_private)
    except RefusedTarget as error:
        return error


async def send(
    pool: EndpointConnections,
    target: httpx.URL | RefusedTarget,
    signing_secrets: Sequence[str],
    claimed: Claimed,
    settings: DeliverySettings,
) -> Outcome:
    """One attempt: POST the event, read the status and at most BODY_LIMIT bytes."""
    at = datetime.now(UTC)
    started = time.monotonic()
    outcome = Outcome(claimed.delivery_id, claimed.round_attempts + 1, at, 0)

    def on_head(answer: Answer) -> None:
        outcome.response_status = answer.status

    try:
        if isinstance(target, RefusedTarget):
            raise RefusedTarget(str(target))
        headers = signing.headers(signing_secrets, claimed.message_id, at, claimed.body)
        async with asyncio.timeout(settings.timeout):
            answer = await pool.post(target, headers, claimed.body, BODY_LIMIT, on_head)
        outcome.response_status = answer.status
        if answer.status in (429, 503):
            outcome.retry_after = parse_retry_after(answer.headers.get("retry-after"), at)
        outcome.response_body = answer.body.decode("utf-8", "replace")
        if answer.cut_off:
            outcome.error = f"The body was cut off: {answer.cut_off}"
    except TimeoutError:
        outcome.error = (
            f"No answer within {settings.timeout:g} s."
            if outcome.response_status is None
            else f"The body did not arrive within {settings.timeout:g} s."
        )
    except RefusedTarget as error:
        outcome.error = f"Refused before connecting: {error}"
    except ExchangeError as error:
        outcome.error = str(error)
    outcome.duration_ms = round((time.monotonic() - started) * 1000)
    if outcome.response_status is not None and not outcome.succeeded and outcome.error is None:
        outcome.error = f"HTTP {outcome.response_status}"
    return outcome


# --- the database side --------------------------------------------------------------------

_ENDPOINT_SQL = """
SELECT id, user_id, url, types, description, enabled, secret, previous_secret,
       previous_secret_expires_at, created_at, updated_at, failing_since, last_success_at
  FROM webhook_endpoints WHERE id = %(endpoint_id)s
"""

_CLAIM_SQL = """
UPDATE webhook_deliveries AS d
   SET lease_expires_at = now() + make_interval(secs => %(lease)s)
  FROM events AS e
 WHERE d.id IN (
        SELECT due.id FROM webhook_deliveries AS due
         WHERE due.endpoint_id = %(endpoint_id)s AND due.status = 'pending'
           AND due.next_attempt_at <= now()
           AND (due.lease_expires_at IS NULL OR due.lease_expires_at < now())
           -- A lingering run takes more only while no other endpoint's run waits.
           AND NOT (%(lingering)s AND EXISTS (
                SELECT 1 FROM procrastinate_jobs AS q
                 WHERE q.queue_name = %(queue)s AND q.status = 'todo'
                   AND NOT (q.args ? 'owner_id')
                   AND (q.scheduled_at IS NULL OR q.scheduled_at <= now())
                   AND q.lock IS DISTINCT FROM %(lock)s))
         ORDER BY due.next_attempt_at, due.id
         LIMIT %(limit)s
         FOR UPDATE OF due SKIP LOCKED)
   AND e.id = d.event_id
RETURNING d.id, d.round_attempts, e.txid, e.id, e.type, e.created_at, e.data
"""

_RECORD_SQL = """
WITH outcome AS (
    SELECT * FROM unnest(
        %(ids)s::bigint[], %(statuses)s::text[], %(next)s::timestamptz[],
        %(at)s::timestamptz[], %(codes)s::integer[], %(durations)s::integer[],
        %(errors)s::text[], %(bodies)s::text[]
    ) AS o(delivery_id, status, next_attempt_at, attempted_at, response_status, duration_ms,
           error, response_body)
), updated AS (
    UPDATE webhook_deliveries AS d
       SET status = o.status, next_attempt_at = o.next_attempt_at,
           attempts = d.attempts + 1, round_attempts = d.round_attempts + 1,
           lease_expires_at = NULL, last_attempt_at = o.attempted_at
      FROM outcome AS o
     WHERE d.id = o.delivery_id
    RETURNING d.id
), attempts AS (
    INSERT INTO webhook_attempts
        (delivery_id, attempted_at, response_status, duration_ms, error, response_body)
    SELECT o.delivery_id, o.attempted_at, o.response_status, o.duration_ms, o.error,
           o.response_body
      FROM outcome AS o JOIN updated AS u ON u.id = o.delivery_id
), endpoint AS (
    UPDATE webhook_endpoints
       SET last_success_at = COALESCE(%(success_at)s::timestamptz, last_success_at),
           failing_since = CASE WHEN %(success_at)s::timestamptz IS NOT NULL
                                THEN %(first_failure)s::timestamptz
                                ELSE COALESCE(failing_since, %(first_failure)s::timestamptz)
                           END
     WHERE id = %(endpoint_id)s
    RETURNING failing_since
)
SELECT failing_since FROM endpoint
"""

_RELEASE_SQL = """
UPDATE webhook_deliveries SET lease_expires_at = NULL
 WHERE id = ANY(%(ids)s::bigint[]) AND status = 'pending'
"""

_DISABLE_SQL = """
UPDATE webhook_endpoints
   SET enabled = false, disabled_at = now(), disabled_reason = %(reason)s, updated_at = now()
 WHERE id = %(endpoint_id)s AND enabled
RETURNING id, user_id, url, types, description, enabled, created_at, updated_at,
          disabled_at, disabled_reason, failing_since, last_success_at
"""

# The next run, for the earliest pending delivery (now, if some are due already).
_SCHEDULE_SQL = """
SELECT jobboard_wake_webhook_endpoint(w.id, next.at)
  FROM webhook_endpoints AS w,
       LATERAL (SELECT min(GREATEST(d.next_attempt_at,
                                    COALESCE(d.lease_expires_at, d.next_attempt_at))) AS at
                  FROM webhook_deliveries AS d
                 WHERE d.endpoint_id = w.id AND d.status = 'pending') AS next
 WHERE w.id = %(endpoint_id)s AND w.enabled AND next.at IS NOT NULL
"""

# Every enabled endpoint with pending deliveries gets its waiting entry back: after an
# outage or a failed run nothing stays pending without a run to come.
WAKE_PENDING_SQL = """
SELECT count(*) FROM (
    SELECT jobboard_wake_webhook_endpoint(w.id, next.at)
      FROM webhook_endpoints AS w,
           LATERAL (SELECT min(GREATEST(d.next_attempt_at,
                                        COALESCE(d.lease_expires_at, d.next_attempt_at))) AS at
                      FROM webhook_deliveries AS d
                     WHERE d.endpoint_id = w.id AND d.status = 'pending') AS next
     WHERE w.enabled AND next.at IS NOT NULL
) AS woken
"""


class EndpointRun:
    """One run of the `deliver_webhooks` task for one endpoint."""

    def __init__(self, pool: Any, endpoint_id: int, settings: DeliverySettings) -> None:
        self.pool = pool
        self.endpoint_id = endpoint_id
        self.settings = settings
        self.stopped = False
        self.sent = 0
        self._kept: list[Outcome] = []
        self._kept_since = 0.0
        self._recording = asyncio.Lock()
        self._attempted = 0
        self._due_again = False
        self._duration_total = 0.0

    async def _execute(self, sql: str, params: dict[str, Any]) -> list[Any]:
        async with self.pool.connection() as connection, connection.cursor() as cursor:
            await cursor.execute(sql, params)
            return await cursor.fetchall() if cursor.description else []

    async def run(self) -> str:
        rows = await self._execute(_ENDPOINT_SQL, {"endpoint_id": self.endpoint_id})
        if not rows:
            return "endpoint gone"
        endpoint = rows[0]
        if not endpoint[5]:
            return "endpoint disabled"
        target = target_of(endpoint[2], self.settings)
        async with endpoint_pool(self.endpoint_id, self.settings) as pool:
            await self._deliver(pool, target, self._secrets(endpoint))
        await self._execute(_SCHEDULE_SQL, {"endpoint_id": self.endpoint_id})
        return f"{self.sent} sent"

    async def _deliver(
        self,
        pool: EndpointConnections,
        target: httpx.URL | RefusedTarget,
        signing_secrets: list[str],
    ) -> None:
        """IN_FLIGHT senders share the claimed deliveries; outcomes are written by the
        group (`_keep`)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.run_seconds
        waiting: deque[tuple[float, Claimed]] = deque()  # (when claimed, delivery)
        claiming = asyncio.Lock()
        drained = False
        lingering = True
        unsent: list[int] = []

        async def next_claimed() -> Claimed | None:
            nonlocal drained, lingering
            while not self.stopped and loop.time() < deadline:
                if not waiting:
                    async with claiming:
                        if not waiting and (not drained or self._due_again):
                            self._due_again = False
                            size = self._claim_size()
                            claimed = await self._claim(size)
                            at = loop.time()
                            waiting.extend((at, delivery) for delivery in claimed)
                            # Fewer than asked: none was left. One that comes due later
                            # has an entry of its own by then (the fan-out's wake, or
                            # this run's _SCHEDULE_SQL).
                            drained = len(claimed) < size
                        elif not waiting and lingering and self._attempted:
                            lingering = await self._linger(deadline, waiting)
                    if not waiting:
                        return None
                    continue  # the stop and the deadline again, after the claim
                claimed_at, delivery = waiting.popleft()
                if loop.time() - claimed_at > LEASE_MARGIN_SECONDS:
                    # Its lease could end mid-attempt: back to the table unsent.
                    unsent.append(delivery.delivery_id)
                    continue
                return delivery
            return None

        async def sender() -> None:
            while (delivery := await next_claimed()) is not None:
                outcome = await send(pool, target, signing_secrets, delivery, self.settings)
                if outcome.gone:
                    self.stopped = True  # 410: nothing more starts
                await self._keep(outcome)

        while True:
            await asyncio.gather(*(sender() for _ in range(IN_FLIGHT)))
            await self._write_kept()
            # A retry the schedule made due at once (a wait of 0) goes in this run.
            if not self._due_again or self.stopped or loop.time() >= deadline:
                break
        unsent.extend(delivery.delivery_id for _, delivery in waiting)
        if unsent:
            await self._execute(_RELEASE_SQL, {"ids": unsent})

    async def _linger(self, deadline: float, waiting: deque[tuple[float, Claimed]]) -> bool:
        """Drained: write what was sent, wait LINGER_SECONDS, and take what came due
        meanwhile, unless another endpoint's run waits for a slot. An endpoint told of a
        steady stream of changes (a job.completed per job) is served by one run taking
        them by the group, instead of a run of its own (queue entry, fetch, claim, write,
        next run, finish) for every few. True while there was something to take."""
        loop = asyncio.get_running_loop()
        if self.stopped or loop.time() + LINGER_SECONDS >= deadline:
            return False
        await self._write_kept()
        await asyncio.sleep(LINGER_SECONDS)
        if self.stopped:
            return False
        claimed = await self._claim(self._claim_size(), lingering=True)
        at = loop.time()
        waiting.extend((at, delivery) for delivery in claimed)
        return bool(claimed)

    def _claim_size(self) -> int:
        """As many as IN_FLIGHT senders start within a lease's margin, at the attempts'
        mean duration so far (a slow endpoint's claims hold only what it will reach),
        between IN_FLIGHT and CLAIM; before any attempt, 2 x IN_FLIGHT."""
        if not self._attempted:
            return 2 * IN_FLIGHT
        mean = max(self._duration_total / self._attempted, 0.001)
        return max(IN_FLIGHT, min(CLAIM, int(IN_FLIGHT * LEASE_MARGIN_SECONDS / mean)))

    async def _keep(self, outcome: Outcome) -> None:
        """Hold an outcome to write it with others: once RECORD_BATCH wait, the oldest has
        waited RECORD_DELAY_SECONDS, or on a 410; the rest when the run ends. Outcomes
        are at-least-once too: a run killed before writing them sends them again."""
        self._attempted += 1
        self._duration_total += outcome.duration_ms / 1000
        now = asyncio.get_running_loop().time()
        if not self._kept:
            self._kept_since = now
        self._kept.append(outcome)
        if self._recording.locked():
            return  # a write is under way; the next one takes these
        if (
            outcome.gone
            or len(self._kept) >= RECORD_BATCH
            or now - self._kept_since >= RECORD_DELAY_SECONDS
        ):
            await self._write_kept()

    async def _write_kept(self) -> None:
        async with self._recording:
            while self._kept:
                batch, self._kept = self._kept, []
                await self._record(batch)

    def _secrets(self, endpoint: Any) -> list[str]:
        key = self.settings.secret_key
        found = [signing.unseal(endpoint[6], key)]
        previous, expires = endpoint[7], endpoint[8]
        if previous is not None and expires is not None and expires > datetime.now(UTC):
            found.append(signing.unseal(previous, key))
        secrets_in_use = [secret for secret in found if secret is not None]
        if not secrets_in_use:
            logger.error(
                "webhook endpoint %s: its secret was sealed under another SECRET_KEY",
                self.endpoint_id,
            )
        return secrets_in_use

    async def _claim(self, limit: int, lingering: bool = False) -> list[Claimed]:
        rows = await self._execute(
            _CLAIM_SQL,
            {
                "endpoint_id": self.endpoint_id,
                "lingering": lingering,
                "queue": QUEUE_WEBHOOKS,
                "lock": webhook_endpoint_lock(self.endpoint_id),
                "limit": limit,
                "lease": self.settings.timeout + LEASE_MARGIN_SECONDS,
            },
        )
        claimed = []
        for delivery_id, round_attempts, txid, event_id, type_name, created_at, data in rows:
            body = json.dumps(
                envelope(txid, event_id, type_name, created_at, data), separators=(",", ":")
            ).encode()
            claimed.append(Claimed(delivery_id, round_attempts, public_id(txid, event_id), body))
        return claimed

    async def _record(self, outcomes: list[Outcome]) -> None:
        if not outcomes:
            return
        self.sent += len(outcomes)
        outcomes.sort(key=lambda outcome: outcome.attempted_at)
        now = datetime.now(UTC)
        statuses, next_times, exhausted = [], [], False
        for outcome in outcomes:
            if outcome.succeeded:
                statuses.append(DeliveryStatus.SUCCEEDED.value)
                next_times.append(None)
                continue
            retry_at = None
            if not outcome.gone:
                retry_at = next_attempt_at(
                    outcome.round_attempts, now, self.settings.schedule, outcome.retry_after
                )
            statuses.append(
                DeliveryStatus.PENDING.value if retry_at else DeliveryStatus.FAILED.value
            )
            next_times.append(retry_at)
            exhausted = exhausted or (retry_at is None and not outcome.gone)
        successes = [outcome.attempted_at for outcome in outcomes if outcome.succeeded]
        last_success = max(successes) if successes else None
        failures = [
            outcome.attempted_at
            for outcome in outcomes
            if not outcome.succeeded
            and (last_success is None or outcome.attempted_at > last_success)
        ]
        rows = await self._execute(
            _RECORD_SQL,
            {
                "ids": [outcome.delivery_id for outcome in outcomes],
                "statuses": statuses,
                "next": next_times,
                "at": [outcome.attempted_at for outcome in outcomes],
                "codes": [outcome.response_status for outcome in outcomes],
                "durations": [outcome.duration_ms for outcome in outcomes],
                "errors": [outcome.error for outcome in outcomes],
                "bodies": [outcome.response_body for outcome in outcomes],
                "success_at": last_success,
                "first_failure": min(failures) if failures else None,
                "endpoint_id": self.endpoint_id,
            },
        )
        if not rows:  # the endpoint was deleted meanwhile: its deliveries went with it
            self.stopped = True
            return
        if any(at is not None and at <= now for at in next_times):
            self._due_again = True
        failing_since = rows[0][0]
        if any(outcome.gone for outcome in outcomes):
            await self.disable(GONE)
        elif (
            exhausted
            and failing_since is not None
            and (now - failing_since).total_seconds() >= self.settings.disable_after
        ):
            await self.disable(FAILING)

    async def disable(self, reason: str) -> None:
        """Disable the endpoint and tell its owner (`webhook.disabled`, with its email),
        in one transaction. Its pending deliveries wait until it is enabled again."""
        self.stopped = True
        async with self.pool.connection() as connection, connection.transaction():
            async with connection.cursor() as cursor:
                await cursor.execute(
                    _DISABLE_SQL, {"endpoint_id": self.endpoint_id, "reason": reason}
                )
                row = await cursor.fetchone()
                if row is None:  # disabled or deleted meanwhile
                    return
                endpoint = SimpleNamespace(
                    **{
                        column.name: value
                        for column, value in zip(cursor.description, row, strict=True)
                    }
                )
            event = build_event("webhook.disabled", endpoint=endpoint, reason=reason)
            await write_events_async(connection, [event])
        logger.warning("webhook endpoint %s disabled (%s)", self.endpoint_id, reason)


async def deliver_endpoint(pool: Any, endpoint_id: int, settings: DeliverySettings) -> str:
    """Run the endpoint's due deliveries (see the module's docstring); says what it did."""
    return await EndpointRun(pool, endpoint_id, settings).run()


async def wake_pending(pool: Any) -> int:
    """Give every enabled endpoint with pending deliveries its waiting entry back."""
    async with pool.connection() as connection, connection.cursor() as cursor:
        await cursor.execute(WAKE_PENDING_SQL)
        row = await cursor.fetchone()
    return int(row[0]) if row else 0

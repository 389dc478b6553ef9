"""Rate limits: the one home of every "at most N per window" rule (SPEC §3, "Account
takeover and abuse"). Services call it; views never do.

Each limit counts events (a failed login, a code sent, ...) per subject (an address, a
client IP, both) in a sliding window: the Nth event within the window is the last one
allowed, and the next is refused with 429 until the oldest counted event leaves the
window. The numbers come from configuration (config.py, README "Rate limits").

Storage is one row per (limit, subject) in `rate_limit_hits`, holding the times of the
events still inside the window. Counting an event is one atomic statement
(`INSERT ... ON CONFLICT DO UPDATE ... RETURNING`): the row lock that PostgreSQL takes for
the update makes concurrent requests, in any web process, count one after the other, so
two requests racing at the edge cannot both get the last slot. Being in PostgreSQL, the
counts are shared by every process and survive restarts; the periodic cleanup deletes
rows whose window has passed (`purge_expired_rate_limits`).

Two ways to count:
- `take(...)` inside the caller's transaction, for events known up front (a code about
  to be sent): the slot commits or rolls back with the caller's work.
- `reserve(...)` for failures, known only after the check (a password, a code): the slot
  is taken and committed *before* the check, so concurrent guesses cannot all slip past
  the limit; a check that succeeds gives it back with `Reservation.release()`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import bindparam, delete, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import DateTime, Integer, Interval

from jobboard.errors import TooManyRequests
from jobboard.extensions import db
from jobboard.models import RateLimitHits, now_utc

# The client IP counted when a caller has none to give (CLI, scripts, a Unix socket peer).
UNKNOWN_IP = "unknown"


@dataclass(frozen=True)
class Limit:
    """`count_setting` events per `window_setting` seconds (configuration keys); a limit
    without `count_setting` allows one event per window (a cooldown)."""

    name: str
    what: str
    window_setting: str
    count_setting: str | None = None

    @property
    def count(self) -> int:
        if self.count_setting is None:
            return 1
        return int(current_app.config[self.count_setting])

    @property
    def window(self) -> timedelta:
        value = current_app.config[self.window_setting]
        return value if isinstance(value, timedelta) else timedelta(seconds=value)

    def key(self, subject: str) -> str:
        return f"{self.name}:{subject}"

    def describe(self) -> str:
        return f"at most {self.count} {self.what} per {_duration(self.window)}"


LOGIN_FAILURES_PER_EMAIL_IP = Limit(
    "login-failures-email-ip",
    "failed logins for one email address from one IP address",
    "LOGIN_FAILURES_PER_EMAIL_IP_WINDOW",
    "LOGIN_FAILURES_PER_EMAIL_IP",
)
LOGIN_FAILURES_PER_IP = Limit(
    "login-failures-ip",
    "failed logins from one IP address",
    "LOGIN_FAILURES_PER_IP_WINDOW",
    "LOGIN_FAILURES_PER_IP",
)
CODES_SENT_PER_IP = Limit(
    "codes-sent-ip",
    "emailed codes requested from one IP address",
    "CODES_SENT_PER_IP_WINDOW",
    "CODES_SENT_PER_IP",
)
CODES_SENT_PER_ADDRESS = Limit(
    "codes-sent-address",
    "emailed codes per email address",
    "CODES_SENT_PER_ADDRESS_WINDOW",
    "CODES_SENT_PER_ADDRESS",
)
CODE_CHECK_FAILURES_PER_IP = Limit(
    "code-check-failures-ip",
    "failed code checks from one IP address",
    "CODE_CHECK_FAILURES_PER_IP_WINDOW",
    "CODE_CHECK_FAILURES_PER_IP",
)
RESET_CODE_COOLDOWN = Limit(
    "reset-code-cooldown",
    "password reset code per email address",
    "OTP_RESEND_COOLDOWN",
)
# Request bodies refused as malformed (400, 413, 422) without an authenticated caller;
# counted and enforced at the HTTP edge (request_rules.SafeParser).
INVALID_REQUESTS_PER_IP = Limit(
    "invalid-requests-ip",
    "invalid requests without an account from one IP address",
    "INVALID_REQUESTS_PER_IP_WINDOW",
    "INVALID_REQUESTS_PER_IP",
)

ALL_LIMITS = (
    LOGIN_FAILURES_PER_EMAIL_IP,
    LOGIN_FAILURES_PER_IP,
    CODES_SENT_PER_IP,
    CODES_SENT_PER_ADDRESS,
    CODE_CHECK_FAILURES_PER_IP,
    RESET_CODE_COOLDOWN,
    INVALID_REQUESTS_PER_IP,
)

# Count one event unless the window already holds `count` of them. The row lock of the
# conflicting row serialises concurrent hits on one key. Returns the hits in the window,
# oldest first, the new one last when it was counted.
_HIT = (
    text(
        """
    INSERT INTO rate_limit_hits AS r (key, hits, expires_at)
    VALUES (:key, ARRAY[:at], :at + :window)
    ON CONFLICT (key) DO UPDATE SET
        hits = (
            SELECT CASE WHEN cardinality(live.hits) < :count THEN live.hits || :at
                        ELSE live.hits END
            FROM (SELECT array(SELECT h FROM unnest(r.hits) AS h
                               WHERE h > :at - :window ORDER BY h) AS hits) AS live
        ),
        expires_at = (
            SELECT CASE WHEN count(*) < :count THEN :at + :window ELSE r.expires_at END
            FROM unnest(r.hits) AS h WHERE h > :at - :window
        )
    RETURNING hits
    """
    )
    .bindparams(
        bindparam("at", type_=DateTime(timezone=True)),
        bindparam("window", type_=Interval()),
        bindparam("count", type_=Integer()),
    )
    .columns(hits=ARRAY(DateTime(timezone=True)))
)

_UNHIT = text(
    "UPDATE rate_limit_hits SET hits = array_remove(hits, :at) WHERE key = :key"
).bindparams(bindparam("at", type_=DateTime(timezone=True)))


@dataclass(frozen=True)
class Hit:
    key: str
    at: datetime


def take(limit: Limit, subject: str, now: datetime | None = None) -> Hit:
    """Count one event of `limit` for `subject` on the current transaction, or raise
    TooManyRequests (429, Retry-After) when the window is full."""
    now = now or now_utc()
    window = limit.window
    hits = db.session.execute(
        _HIT, {"key": limit.key(subject), "at": now, "window": window, "count": limit.count}
    ).scalar_one()
    if hits and hits[-1] == now:
        return Hit(limit.key(subject), now)
    # Full: a slot frees up when enough of the oldest hits have left the window.
    oldest_to_leave = hits[len(hits) - limit.count]
    seconds = max(1, math.ceil((oldest_to_leave + window - now).total_seconds()))
    raise TooManyRequests(
        f"Too many requests: {limit.describe()}. Try again in {seconds} s.",
        headers={"Retry-After": str(seconds)},
    )


def release(hit: Hit) -> None:
    """Give back a counted event (on the current transaction)."""
    db.session.execute(_UNHIT, {"key": hit.key, "at": hit.at})


def take_all(limits: Iterable[tuple[Limit, str]], now: datetime | None = None) -> list[Hit]:
    """Count one event for each (limit, subject), in order, on the current transaction.
    When one is full the 429 propagates, and the caller's rollback undoes the others."""
    now = now or now_utc()
    return [take(limit, subject, now) for limit, subject in limits]


@dataclass
class Reservation:
    """Failure slots counted and committed ahead of a check; `release()` gives them back
    when the check succeeds (on the caller's transaction)."""

    hits: list[Hit] = field(default_factory=list)

    def release(self) -> None:
        for hit in self.hits:
            release(hit)
        self.hits = []


def reserve(limits: Iterable[tuple[Limit, str]], now: datetime | None = None) -> Reservation:
    """Count one failure for each (limit, subject) and commit, before the check whose
    outcome decides whether it was one. Raises 429 (taking nothing) when any is full."""
    try:
        hits = take_all(limits, now)
    except TooManyRequests:
        db.session.rollback()
        raise
    db.session.commit()
    return Reservation(hits)


def purge_expired_rate_limits(now: datetime) -> int:
    """Delete counters whose newest event has left its window; returns how many."""
    deleted = db.session.execute(
        delete(RateLimitHits).where(RateLimitHits.expires_at <= now)
    ).rowcount
    db.session.commit()
    return deleted


def _duration(window: timedelta) -> str:
    seconds = int(window.total_seconds())
    for unit, size in (("hour", 3600), ("minute", 60)):
        if seconds % size == 0:
            amount = seconds // size
            return f"{unit}" if amount == 1 else f"{amount} {unit}s"
    return "second" if seconds == 1 else f"{seconds} seconds"

"""Rate limits: the one home of every "at most N per window" rule (the accounts' abuse
limits against password guessing, code guessing and mail bombing, the cooldowns between
two codes, the bid notices; docs/security.md). Services call it; views never do.

Each limit counts events (a failed login, a code sent, ...) per subject (an address, a
client IP, both) in a sliding window: the Nth event within the window is the last one
allowed, and the next is refused with 429 until the oldest counted event leaves the
window. The numbers come from configuration (config.py, docs/configuration.md).

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
`wait(...)` tells how long until a limit would count one more event, without counting;
`try_take(...)` counts an event when there is room and says whether it did, for rules
that drop something (a notice email) instead of refusing a request.

Clients are counted by IP address, IPv6 ones by their /64 network (`client_key`): a
subscriber line usually gets a whole /64, so counting single IPv6 addresses would give
one client 2**64 budgets. Every subject part that is an IP address is keyed that way,
whichever limit counts it.

How the limits on codes add up to "nobody can lock an address's owner out, and nobody
can guess a code" (defaults; the rules are in docs/security.md):
- Guessing. A wrong code is counted per client, per (address, client) and per address.
  The last one bounds what any number of clients can try on one address:
  CODE_CHECK_FAILURES_PER_ADDRESS (60) wrong codes an hour, verification and reset
  together. A 6-digit code is one of 10**6 values, so n guesses find it with a chance of
  at most n / (10**6 - n): 60 / 999,940 = 6.0e-5 an hour, below 1 in 10,000, with 1,000
  attacking IPs or a million.
- Lockout. Nobody kills the owner's code or takes the owner's budget from another IP:
  wrong tries kill a code only for the IP that made them (OTP_MAX_TRIES, 5, per code and
  client), and one client spends at most CODE_CHECK_FAILURES_PER_ADDRESS_IP (10) of the
  address's 60 checks and CODES_SENT_PER_ADDRESS_IP (5) of its CODES_SENT_PER_ADDRESS
  (30) codes an hour. So up to 5 attacking clients (IPs, or IPv6 /64s) leave the owner 10
  checks and 5 codes; each code request waits at most the 60 s cooldown, during which the
  code just sent (whoever asked for it) is in the owner's mailbox and works. It takes 6
  clients or more to spend an address's budgets, and then only until the window slides.
"""

from __future__ import annotations

import ipaddress
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


def client_key(address: str) -> str:
    """How a limit counts a client address: an IPv6 address as its /64 network, an IPv4
    address (IPv4-mapped IPv6 included) as itself; anything else (`UNKNOWN_IP`, an email
    address) unchanged."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((int(ip) >> 64 << 64, 64)))
    return str(ip)


@dataclass(frozen=True)
class Limit:
    """`count_setting` events per `window_setting` seconds (configuration keys); a limit
    without `count_setting` allows one event per window (a cooldown). `advice` ends the
    message of its 429, before "Try again in N s."."""

    name: str
    what: str
    window_setting: str
    count_setting: str | None = None
    advice: str = ""

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
        """The counter of `subject`: parts separated by `|` (an address and a client IP,
        say), each IP address keyed by `client_key`."""
        return f"{self.name}:" + "|".join(client_key(part) for part in subject.split("|"))

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
CODES_SENT_PER_ADDRESS_IP = Limit(
    "codes-sent-address-ip",
    "emailed codes for one email address requested from one IP address",
    "CODES_SENT_PER_ADDRESS_IP_WINDOW",
    "CODES_SENT_PER_ADDRESS_IP",
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
CODE_CHECK_FAILURES_PER_ADDRESS_IP = Limit(
    "code-check-failures-address-ip",
    "failed code checks for one email address from one IP address",
    "CODE_CHECK_FAILURES_PER_ADDRESS_IP_WINDOW",
    "CODE_CHECK_FAILURES_PER_ADDRESS_IP",
)
# The bound on guessing: n wrong codes an hour find a 6-digit code with a chance of at most
# n / (10**6 - n), whatever the number of clients (60: 6.0e-5; see the module docstring).
CODE_CHECK_FAILURES_PER_ADDRESS = Limit(
    "code-check-failures-address",
    "failed code checks for one email address",
    "CODE_CHECK_FAILURES_PER_ADDRESS_WINDOW",
    "CODE_CHECK_FAILURES_PER_ADDRESS",
)
# Wrong tries of one code from one client: the last one kills the code for that client
# only (counted while the code can live).
CODE_TRIES_PER_IP = Limit(
    "code-tries-ip",
    "wrong tries of one code from one IP address",
    "OTP_TTL",
    "OTP_MAX_TRIES",
)
_NEWEST_CODE_WORKS = (
    "If the address has an account, the code just sent to it is the one that works: use "
    "the newest in the mailbox, or ask again then. "
)
VERIFICATION_CODE_COOLDOWN = Limit(
    "verification-code-cooldown",
    "verification code per email address",
    "OTP_RESEND_COOLDOWN",
    advice=_NEWEST_CODE_WORKS,
)
RESET_CODE_COOLDOWN = Limit(
    "reset-code-cooldown",
    "password reset code per email address",
    "OTP_RESEND_COOLDOWN",
    advice=_NEWEST_CODE_WORKS,
)
# Not a refusal: a bidder's later bids on the same job within the window are not mailed
# to its owner (the email limit of `bid.placed` in jobboard/events/catalogue.py); they are
# events all the same.
BID_NOTICE_PER_BIDDER_JOB = Limit(
    "bid-notice-bidder-job",
    "notice email per bidder and job",
    "BID_NOTICE_WINDOW",
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
    CODES_SENT_PER_ADDRESS_IP,
    CODES_SENT_PER_ADDRESS,
    CODE_CHECK_FAILURES_PER_IP,
    CODE_CHECK_FAILURES_PER_ADDRESS_IP,
    CODE_CHECK_FAILURES_PER_ADDRESS,
    CODE_TRIES_PER_IP,
    VERIFICATION_CODE_COOLDOWN,
    RESET_CODE_COOLDOWN,
    BID_NOTICE_PER_BIDDER_JOB,
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

_LIVE_HITS = (
    text(
        "SELECT array(SELECT h FROM unnest(hits) AS h WHERE h > :at - :window ORDER BY h) "
        "FROM rate_limit_hits WHERE key = :key"
    )
    .bindparams(
        bindparam("at", type_=DateTime(timezone=True)), bindparam("window", type_=Interval())
    )
    .columns(hits=ARRAY(DateTime(timezone=True)))
)


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
    seconds = _seconds_until_room(limit, hits, now)
    raise TooManyRequests(
        f"Too many requests: {limit.describe()}. {limit.advice}Try again in {seconds} s.",
        headers={"Retry-After": str(seconds)},
    )


def try_take(limit: Limit, subject: str, now: datetime | None = None) -> bool:
    """Count one event of `limit` for `subject` (on the current transaction) if the window
    has room; whether it did."""
    try:
        take(limit, subject, now)
    except TooManyRequests:
        return False
    return True


def wait(limit: Limit, subject: str, now: datetime | None = None) -> int | None:
    """Seconds until `limit` would count one more event for `subject`, or None when it
    would now. Counts nothing."""
    now = now or now_utc()
    hits = db.session.execute(
        _LIVE_HITS, {"key": limit.key(subject), "at": now, "window": limit.window}
    ).scalar_one_or_none()
    if not hits or len(hits) < limit.count:
        return None
    return _seconds_until_room(limit, hits, now)


def _seconds_until_room(limit: Limit, hits: list[datetime], now: datetime) -> int:
    """A full window has room again when enough of its oldest hits have left it."""
    oldest_to_leave = hits[len(hits) - limit.count]
    return max(1, math.ceil((oldest_to_leave + limit.window - now).total_seconds()))


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
    when the check succeeds (on the caller's transaction), `release(limit, ...)` only
    those of the given limits (a check of two things, one of which passed)."""

    hits: list[tuple[Limit, Hit]] = field(default_factory=list)

    def release(self, *limits: Limit) -> None:
        kept = []
        for limit, hit in self.hits:
            if limits and limit not in limits:
                kept.append((limit, hit))
            else:
                release(hit)
        self.hits = kept


def reserve(limits: Iterable[tuple[Limit, str]], now: datetime | None = None) -> Reservation:
    """Count one failure for each (limit, subject) and commit, before the check whose
    outcome decides whether it was one. Raises 429 (taking nothing) when any is full."""
    pairs = list(limits)
    try:
        hits = take_all(pairs, now)
    except TooManyRequests:
        db.session.rollback()
        raise
    db.session.commit()
    return Reservation([(limit, hit) for (limit, _), hit in zip(pairs, hits, strict=True)])


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

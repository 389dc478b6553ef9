"""Reading events back: the caller's feed, and the retention of old events.

The feed's order is (writing transaction, id), and it shows only events whose transaction
is older than every transaction of this database still running: ids are drawn from a
sequence when events are written, and transactions commit in any order, so ordering by id
alone would let a cursor pass an event that commits late. With this rule, an event that
is not visible yet always sorts after every event the feed has shown, and `after=<id>`
never skips one. Transaction ids only grow, so one that starts later sorts later.

"Still running" is the statement's snapshot (`pg_current_snapshot`) less the transactions
known to belong to other databases of the server (pg_stat_activity): they write no
events here, and a long one elsewhere must not hold this feed back. A transaction of this
database that stays open does hold back the feed (of every user) until it ends.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import delete, select, text, tuple_

from jobboard.errors import Unprocessable
from jobboard.events.outbox import envelope, parse_public_id
from jobboard.extensions import db
from jobboard.models import Event, User

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
PURGE_BATCH = 10_000

# Below it, every transaction has ended: the oldest running transaction of this database
# (one that may be of another database but has ended since counts too: that errs on the
# safe side), else the next transaction id to be assigned.
_SETTLED = text(
    """(SELECT COALESCE(
        (SELECT min(running::text::bigint)
           FROM pg_snapshot_xip(pg_current_snapshot()) AS running
          WHERE NOT EXISTS (
                SELECT 1 FROM pg_stat_activity AS elsewhere
                 WHERE elsewhere.backend_xid = xid(running)
                   AND elsewhere.datname IS DISTINCT FROM current_database())),
        pg_snapshot_xmax(pg_current_snapshot())::text::bigint))"""
)


def feed(
    user: User, after: str | None, types: Collection[str] = (), limit: int = DEFAULT_LIMIT
) -> list[dict[str, Any]]:
    """The caller's events after the cursor `after` (an event id), oldest first."""
    query = select(Event.txid, Event.id, Event.type, Event.created_at, Event.data).where(
        Event.user_id == user.id, Event.endpoint_id.is_(None), Event.txid < _SETTLED
    )
    if after is not None:
        position = parse_public_id(after)
        if position is None:
            raise Unprocessable(
                "after is not an event id.",
                errors={"query": {"after": ["Not an event id (evt_ and 32 hex digits)."]}},
            )
        query = query.where(tuple_(Event.txid, Event.id) > tuple_(*position))
    if types:
        query = query.where(Event.type.in_(list(types)))
    rows = db.session.execute(query.order_by(Event.txid, Event.id).limit(limit))
    return [envelope(*row) for row in rows]


def purge_old_events(now: datetime) -> int:
    """Delete events older than EVENT_RETENTION_DAYS as of `now` (their deliveries go
    with them), in batches so that no transaction holds many rows; safe to re-run."""
    cutoff = now - timedelta(days=current_app.config["EVENT_RETENTION_DAYS"])
    deleted = 0
    while True:
        batch = (
            select(Event.id).where(Event.created_at < cutoff).limit(PURGE_BATCH).scalar_subquery()
        )
        count = db.session.execute(delete(Event).where(Event.id.in_(batch))).rowcount
        db.session.commit()
        deleted += count
        if count < PURGE_BATCH:
            return deleted

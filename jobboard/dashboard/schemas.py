"""Dashboard schemas (output only)."""

from __future__ import annotations

from marshmallow import Schema, fields


class JobCountsOut(Schema):
    """Jobs by status; every status is present (zeros included), plus their total."""

    pending = fields.Integer(required=True)
    in_progress = fields.Integer(required=True)
    completed = fields.Integer(required=True)
    failed = fields.Integer(required=True)
    cancelled = fields.Integer(required=True)
    total = fields.Integer(required=True)


class BidCountsOut(Schema):
    """Bids by status; every status is present (zeros included)."""

    pending = fields.Integer(required=True)
    accepted = fields.Integer(required=True)
    rejected = fields.Integer(required=True)
    withdrawn = fields.Integer(required=True)


class QueueHealthOut(Schema):
    """Health of the Procrastinate queue (admins only)."""

    queues = fields.Dict(
        keys=fields.String(),
        values=fields.Dict(keys=fields.String(), values=fields.Integer()),
        required=True,
        metadata={
            "description": (
                "Queue entries per queue name and Procrastinate status (todo, doing, "
                "succeeded, failed, cancelled, aborted). The queues jobs, mail and "
                "maintenance are always present. Finished entries count until the hourly "
                "prune deletes them, QUEUE_RETENTION_HOURS after they finished (see "
                "docs/configuration.md); todo includes entries scheduled for later."
            ),
            "example": {"jobs": {"todo": 3, "doing": 1, "succeeded": 120, "failed": 2}},
        },
    )
    waiting = fields.Integer(
        required=True,
        metadata={"description": "Entries due now (todo, scheduled time reached) not started."},
    )
    oldest_waiting_seconds = fields.Float(
        required=True,
        allow_none=True,
        metadata={
            "description": (
                "How long the oldest due entry has waited, in seconds: since its scheduled "
                "time, or since it was deferred (or re-queued) when that came later. Null "
                "when nothing waits. Entries scheduled in the future do not count."
            )
        },
    )
    live_workers = fields.Integer(
        required=True,
        metadata={
            "description": (
                "Workers whose last heartbeat is within STALLED_WORKER_SECONDS (see "
                "docs/configuration.md), the threshold the workers themselves use to declare "
                "a peer dead."
            )
        },
    )


class DashboardOut(Schema):
    """The caller's numbers. `queue` is present only for admins."""

    jobs = fields.Nested(
        JobCountsOut, required=True, metadata={"description": "Jobs the caller owns."}
    )
    assigned = fields.Nested(
        JobCountsOut,
        required=True,
        metadata={"description": "Jobs assigned to the caller (their bid was accepted)."},
    )
    bids = fields.Nested(
        BidCountsOut, required=True, metadata={"description": "Bids the caller made."}
    )
    queue = fields.Nested(
        QueueHealthOut, metadata={"description": "Queue health; admins only, absent otherwise."}
    )

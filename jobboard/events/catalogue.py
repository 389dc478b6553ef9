"""Who hears of what: the one table of event types, their recipient, their channels.

Every event goes to the feed (`GET /api/events/`, except `webhook.test`) and to the
recipient's webhook endpoints that take its type. An email goes out only for a type that
names an email template here (`jobboard/templates/email/<template>.{txt,html}`), only when
the event's data wants one (`job.completed`: an assignee's delivery, not a processor's
run), and within the type's email limit (`bid.placed`: one email per bidder and job within
BID_NOTICE_WINDOW; later bids are in the feed and the webhooks, not in the mailbox).
`GET /api/events/types/`, the OpenAPI payload schemas, docs/events.md, the outbox and the
email task all read this table.

The table sits below every blueprint (jobs, bids, reviews and plans write events in their
own transactions), so it names each type's payload schema by its name in
`jobboard.events.payloads`, which dumps the data with the blueprints' API schemas and is
plugged in from above (`jobboard.events.building`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from jobboard import ratelimit

Resources = Mapping[str, Any]

FEED = "feed"
WEBHOOKS = "webhooks"
EMAIL = "email"


@dataclass(frozen=True)
class EmailLimit:
    """At most the limit's count of emails of a type per key (from the event's data) within
    its window; the events over it are written all the same, without their email."""

    limit: ratelimit.Limit
    key: Callable[[Mapping[str, Any]], str]

    def allows(self, data: Mapping[str, Any], now: datetime | None = None) -> bool:
        """Counts one email for this event's key, on the caller's transaction, if there is
        room; whether there was."""
        return ratelimit.try_take(self.limit, self.key(data), now)


@dataclass(frozen=True)
class EventType:
    name: str
    recipient: str
    description: str
    # The name of its data's schema in jobboard.events.payloads.
    payload: str
    # The recipient's user id, from the resources the change passes to `build_event`.
    to: Callable[[Resources], int]
    example: dict[str, Any]
    email: str | None = None
    # With an email template: whether this event's data wants the email (default: always).
    email_when: Callable[[Mapping[str, Any]], bool] | None = None
    email_limit: EmailLimit | None = None
    in_feed: bool = True

    @property
    def channels(self) -> list[str]:
        channels = [FEED] if self.in_feed else []
        channels.append(WEBHOOKS)
        if self.email:
            channels.append(EMAIL)
        return channels

    def wants_email(self, data: Mapping[str, Any]) -> bool:
        if self.email is None:
            return False
        return self.email_when is None or self.email_when(data)


def _owner(resources: Resources) -> int:
    return resources["job"].owner_id


def _assignee(resources: Resources) -> int:
    return resources["job"].assignee_id


def _bidder(resources: Resources) -> int:
    return resources["bid"].bidder_id


def _other_party(resources: Resources) -> int:
    # Released by the owner: the former assignee hears of it; by the assignee: the owner.
    if resources["by"] == "owner":
        return resources["assignee_id"]
    return resources["job"].owner_id


# --- examples (what GET /api/events/types/ shows) ---------------------------------------

_JOB = {
    "id": 42,
    "name": "Resize the product photos",
    "description": "All 120 photos, 800 px wide.",
    "kind": "echo",
    "params": {"size": 800},
    "scheduled_time": "2026-12-01T09:00:00+00:00",
    "status": "completed",
    "priority": 0,
    "max_attempts": 3,
    "attempts": 1,
    "owner_id": 7,
    "assignee_id": None,
    "created_at": "2026-12-01T08:59:00+00:00",
    "updated_at": "2026-12-01T09:00:01+00:00",
    "started_at": "2026-12-01T09:00:00+00:00",
    "finished_at": "2026-12-01T09:00:01+00:00",
    "due_date": None,
    "last_error": None,
}
_ASSIGNED = {
    **_JOB,
    "kind": "manual",
    "status": "in_progress",
    "assignee_id": 9,
    "due_date": "2026-12-10",
    "finished_at": None,
}
_PROFILE = {
    "id": 9,
    "display_name": "Ada",
    "bio": "Photos and scripts.",
    "skills": ["python"],
    "rating": {"average": 4.5, "count": 2},
    "completed_jobs": 3,
}
_BID = {
    "id": 5,
    "job_id": 42,
    "bidder": _PROFILE,
    "comment": "Done by Friday.",
    "proposed_deadline": "2026-12-10",
    "fee": "80.00",
    "currency": "USD",
    "status": "pending",
    "created_at": "2026-12-01T10:00:00+00:00",
    "updated_at": "2026-12-01T10:00:00+00:00",
}
_PLAN = {
    "name": "pro",
    "max_running_jobs": 8,
    "max_open_jobs": 10000,
    "jobs_per_day": 100000,
    "max_params_bytes": 524288,
    "bids_per_day": 1000,
    "max_webhook_endpoints": 10,
}
_FREE = {
    **_PLAN,
    "name": "free",
    "max_running_jobs": 2,
    "max_open_jobs": 100,
    "jobs_per_day": 1000,
    "max_params_bytes": 65536,
    "bids_per_day": 50,
    "max_webhook_endpoints": 1,
}
_ENDPOINT = {
    "id": 3,
    "url": "https://example.com/hooks/jobboard",
    "types": None,
    "description": "Production receiver",
    "enabled": False,
    "created_at": "2026-11-20T12:00:00+00:00",
    "updated_at": "2026-12-01T12:00:00+00:00",
    "disabled_at": "2026-12-01T12:00:00+00:00",
    "disabled_reason": "gone",
}
_RESULT = {
    "job_id": 42,
    "output": {"size": 800},
    "error_message": None,
    "completed_at": "2026-12-01T09:00:01+00:00",
    "duration_ms": 12,
    "note": None,
}


TYPES: tuple[EventType, ...] = (
    EventType(
        "job.completed",
        "owner",
        "The job became completed: by its processor, or by its assignee's delivery "
        "(`data.by` says which). Only a delivery is emailed.",
        "JobCompletedData",
        _owner,
        {"job": _JOB, "by": "processor", "result": _RESULT},
        email="job_delivered",
        email_when=lambda data: data.get("by") == "assignee",
    ),
    EventType(
        "job.retrying",
        "owner",
        "An attempt failed and the next one is scheduled (`data.next_attempt_at`; the error "
        "is `data.job.last_error`).",
        "JobRetryingData",
        _owner,
        {
            "job": {
                **_JOB,
                "status": "pending",
                "last_error": "ValueError: bad input",
                "finished_at": None,
            },
            "next_attempt_at": "2026-12-01T09:00:03+00:00",
        },
    ),
    EventType(
        "job.failed",
        "owner",
        "The last attempt failed.",
        "JobData",
        _owner,
        {"job": {**_JOB, "status": "failed", "attempts": 3, "last_error": "ValueError: bad input"}},
    ),
    EventType(
        "job.cancelled",
        "owner",
        "The job was cancelled before it started.",
        "JobData",
        _owner,
        {"job": {**_JOB, "status": "cancelled", "attempts": 0, "started_at": None}},
    ),
    EventType(
        "bid.placed",
        "job owner",
        "A bid was placed on their job.",
        "BidData",
        _owner,
        {"job": {**_JOB, "kind": "manual", "status": "pending"}, "bid": _BID},
        email="bid_placed",
        email_limit=EmailLimit(
            ratelimit.BID_NOTICE_PER_BIDDER_JOB,
            lambda data: f"{data['bid']['job_id']}|{data['bid']['bidder']['id']}",
        ),
    ),
    EventType(
        "bid.withdrawn",
        "job owner",
        "A bid on their job was withdrawn by its bidder: a pending bid, or the accepted one "
        "when its bidder gives the job back (then `job.released` comes with it).",
        "BidData",
        _owner,
        {
            "job": {**_JOB, "kind": "manual", "status": "pending"},
            "bid": {**_BID, "status": "withdrawn"},
        },
    ),
    EventType(
        "bid.accepted",
        "bidder",
        "Their bid won: they are the job's assignee now.",
        "BidData",
        _bidder,
        {"job": _ASSIGNED, "bid": {**_BID, "status": "accepted"}},
        email="bid_accepted",
    ),
    EventType(
        "bid.rejected",
        "bidder",
        "Their bid lost: the owner accepted another one.",
        "BidData",
        _bidder,
        {
            "job": {
                k: v for k, v in _ASSIGNED.items() if k not in ("params", "due_date", "last_error")
            },
            "bid": {**_BID, "status": "rejected"},
        },
        email="bid_rejected",
    ),
    EventType(
        "job.released",
        "the other party",
        "The assignee gave the job back, or the owner took it away (`data.by`).",
        "JobReleasedData",
        _other_party,
        {
            "job": {**_ASSIGNED, "status": "pending", "assignee_id": None, "due_date": None},
            "by": "assignee",
        },
        email="job_released",
    ),
    EventType(
        "job.due_soon",
        "assignee",
        "A day before the due date of a job assigned to them.",
        "JobDeadlineData",
        _assignee,
        {"job": _ASSIGNED, "due_date": "2026-12-10"},
        email="job_due_soon",
    ),
    EventType(
        "job.overdue",
        "owner",
        "The due date of their job passed undelivered.",
        "JobDeadlineData",
        _owner,
        {"job": _ASSIGNED, "due_date": "2026-12-10"},
        email="job_overdue",
    ),
    EventType(
        "review.received",
        "the reviewed party",
        "A review was left for them.",
        "ReviewData",
        lambda resources: resources["review"].reviewee_id,
        {
            "job": {**_ASSIGNED, "status": "completed"},
            "review": {
                "id": 1,
                "job_id": 42,
                "reviewer_id": 7,
                "reviewee_id": 9,
                "rating": 5,
                "comment": "Fast and careful.",
                "created_at": "2026-12-09T08:00:00+00:00",
            },
        },
    ),
    EventType(
        "plan.ending",
        "user",
        "Their subscription ends soon (PLAN_REMINDER_DAYS ahead).",
        "PlanEndingData",
        lambda resources: resources["user"].id,
        {"plan": _PLAN, "ends_at": "2026-12-31T00:00:00+00:00"},
        email="plan_ending",
    ),
    EventType(
        "plan.ended",
        "user",
        "Their subscription ended: they are on the free plan now.",
        "PlanEndedData",
        lambda resources: resources["user"].id,
        {"plan": _FREE, "previous_plan": "pro"},
        email="plan_ended",
    ),
    EventType(
        "webhook.disabled",
        "endpoint owner",
        "An endpoint was disabled: it answered 410, or had no success for "
        "WEBHOOK_DISABLE_AFTER_SECONDS while its deliveries failed.",
        "WebhookDisabledData",
        lambda resources: resources["endpoint"].user_id,
        {"endpoint": _ENDPOINT, "reason": "gone"},
        email="webhook_disabled",
    ),
    EventType(
        "webhook.test",
        "endpoint owner",
        "Sent by POST /api/webhooks/<id>/test/ to that endpoint only; never in the feed.",
        "WebhookTestData",
        lambda resources: resources["endpoint"].user_id,
        {"endpoint_id": 3, "message": "A test event from jobboard."},
        in_feed=False,
    ),
)

CATALOGUE: dict[str, EventType] = {event_type.name: event_type for event_type in TYPES}
TYPE_NAMES: list[str] = [event_type.name for event_type in TYPES]
# What clients may subscribe to and filter the feed by.
FEED_TYPE_NAMES: list[str] = [event_type.name for event_type in TYPES if event_type.in_feed]


def event_type(name: str) -> EventType:
    """The catalogue's entry; KeyError for a type it does not define."""
    return CATALOGUE[name]


def markdown_table() -> str:
    """The catalogue as docs/events.md shows it (a test keeps the two the same)."""
    lines = [
        "| type | to | when | channels | email template |",
        "|---|---|---|---|---|",
    ]
    for spec in TYPES:
        email = f"`{spec.email}`" if spec.email else "none"
        lines.append(
            f"| `{spec.name}` | {spec.recipient} | {spec.description} | "
            f"{', '.join(spec.channels)} | {email} |"
        )
    return "\n".join(lines)

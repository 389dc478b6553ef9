"""Marshmallow schemas of the operations API."""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates_schema

from jobboard.admin.actions import MAX_BULK_IDS, BulkAction
from jobboard.jobs.schemas import JobFilter, JobOut, JobQueryArgs, JobResultOut

MAX_JOB_ID = 2**31 - 1


class OperatorFilters(Schema):
    """The filters an operator has beyond a user's own lists."""

    owner = fields.Email(
        validate=validate.Length(max=254),
        metadata={"description": "The owner's email (any case)."},
    )
    error = fields.String(
        validate=validate.Length(min=1, max=500),
        metadata={"description": "Case-insensitive text in the job's last error."},
    )


class AdminJobQueryArgs(JobQueryArgs, OperatorFilters):
    pass


class BulkFilterIn(JobFilter, OperatorFilters):
    """The list's filters by their query names; a repeatable one (`status`) as an array."""

    class Meta:
        unknown = RAISE


class QueueOut(Schema):
    name = fields.String()
    waiting = fields.Integer(metadata={"description": "Due entries not started."})
    scheduled = fields.Integer(metadata={"description": "Entries due later."})
    running = fields.Integer()
    failed = fields.Integer(
        metadata={
            "description": "The jobs queue: jobs that failed (GET /api/admin/failures/). "
            "Other queues: failed entries still kept (QUEUE_RETENTION_HOURS)."
        }
    )
    oldest_waiting_seconds = fields.Integer(allow_none=True)
    paused = fields.Boolean()
    paused_at = fields.AwareDateTime(format="iso", allow_none=True)
    finished_per_minute = fields.List(
        fields.Integer(),
        metadata={"description": "Entries finished in each of the last 60 minutes, oldest first."},
    )
    finished_last_hour = fields.Integer()
    lateness_p50 = fields.Float(
        allow_none=True, metadata={"description": "Seconds from due to start, last hour."}
    )
    lateness_p99 = fields.Float(allow_none=True)
    duration_p50 = fields.Float(
        allow_none=True, metadata={"description": "Seconds from start to finish, last hour."}
    )
    duration_p99 = fields.Float(allow_none=True)


class AdminJobOut(JobOut):
    owner_email = fields.String(attribute="owner.email")


class AdminAttemptOut(Schema):
    attempt = fields.Integer()
    started_at = fields.AwareDateTime(format="iso", allow_none=True)
    finished_at = fields.AwareDateTime(format="iso", allow_none=True)
    duration_ms = fields.Integer(allow_none=True)
    outcome = fields.String()
    error = fields.String(allow_none=True)


class AdminJobDetailOut(Schema):
    job = fields.Nested(AdminJobOut)
    result = fields.Nested(JobResultOut, allow_none=True)
    attempts = fields.List(fields.Nested(AdminAttemptOut))


class BulkActionIn(Schema):
    class Meta:
        unknown = RAISE

    action = fields.String(
        required=True, validate=validate.OneOf([action.value for action in BulkAction])
    )
    ids = fields.List(
        fields.Integer(strict=True, validate=validate.Range(min=1, max=MAX_JOB_ID)),
        validate=validate.Length(min=1, max=MAX_BULK_IDS),
        metadata={"description": f"Job ids, any user's; at most {MAX_BULK_IDS:,}."},
    )
    filter = fields.Nested(
        BulkFilterIn,
        metadata={
            "description": "Every job matching it. It must name something: an empty filter "
            'is refused unless `"all": true` says every job is meant.'
        },
    )
    all = fields.Boolean(load_default=False)

    @validates_schema
    def one_target(self, data: dict[str, Any], **kwargs: Any) -> None:
        given = [key for key in ("ids", "filter") if key in data]
        if len(given) != 1 and not (data["all"] and not given):
            raise ValidationError(
                'Give either "ids" or "filter" (with "all": true, a filter may be empty).',
                field_name="_schema",
            )
        if "filter" in data and not data["filter"] and not data["all"]:
            raise ValidationError(
                'An empty filter matches every job: name something, or say "all": true.',
                field_name="filter",
            )
        if "ids" in data and data["all"]:
            raise ValidationError('"all" goes with a filter, not with ids.', field_name="all")


class BulkResultOut(Schema):
    matched = fields.Integer(metadata={"description": "Jobs the ids or the filter matched."})
    changed = fields.Integer(metadata={"description": "Jobs that took the action."})
    skipped = fields.Integer(
        metadata={
            "description": "Jobs that could not take it: their status does not allow it, "
            "their owner's quota is full, or somebody else was changing them at that moment."
        }
    )


class FailureOut(Schema):
    kind = fields.String()
    error = fields.String(metadata={"description": "The first line of the last error."})
    count = fields.Integer()
    first_seen = fields.AwareDateTime(format="iso", allow_none=True)
    last_seen = fields.AwareDateTime(format="iso", allow_none=True)


class RunningOut(Schema):
    queue_job_id = fields.Integer()
    queue = fields.String()
    task = fields.String()
    job_id = fields.Integer(allow_none=True)
    started_at = fields.AwareDateTime(format="iso", allow_none=True)


class WorkerOut(Schema):
    id = fields.Integer()
    started_at = fields.AwareDateTime(format="iso", allow_none=True)
    last_heartbeat = fields.AwareDateTime(format="iso")
    running = fields.List(fields.Nested(RunningOut))


class AuditOut(Schema):
    id = fields.Integer()
    admin_id = fields.Integer(allow_none=True)
    admin_email = fields.String()
    action = fields.String()
    target = fields.Dict()
    matched = fields.Integer(allow_none=True)
    changed = fields.Integer(allow_none=True)
    skipped = fields.Integer(allow_none=True)
    created_at = fields.AwareDateTime(format="iso")

"""Marshmallow schemas of the jobs API."""

from __future__ import annotations

from typing import Any

from marshmallow import (
    EXCLUDE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from jobboard.errors import check_shape
from jobboard.jobs.sorting import DEFAULT_SORT, SORT_KEYS
from jobboard.models import AttemptOutcome, JobStatus
from jobboard.request_rules import UtcDateTime
from workers.processors import LONG_JOB_SECONDS, get_processor, kinds, processors

STATUS_VALUES = [status.value for status in JobStatus]
MAX_PRIORITY = 100


def _known_kind(kind: str) -> None:
    if get_processor(kind) is None:
        raise ValidationError(f"Unknown kind. Known kinds: {', '.join(kinds())}.")


def _kind_metadata() -> dict[str, Any]:
    """The OpenAPI of `kind`: the kinds installed, and each one's time limit (also as
    `x-time-limits`, kind -> seconds, for programs)."""
    installed = processors()
    limits = {
        kind: entry.time_limit
        for kind, entry in sorted(installed.items())
        if entry.time_limit is not None
    }
    listed = ", ".join(
        f"{kind} {limit:g} s{' (long)' if installed[kind].long else ''}"
        for kind, limit in limits.items()
    )
    return {
        "description": "The processor: echo, sleep, wordcount, checksum, flaky, report, or a "
        "kind added by a plugin; or `manual`: done by a person, never by the queue (the job "
        "waits, open for bids, until a bid is accepted). Each kind the queue runs has a time "
        "limit per attempt: an attempt still running at it is stopped and fails, and the "
        f"next attempt is scheduled as after any failure. Kinds over {LONG_JOB_SECONDS:g} s "
        "are long: a worker runs only a few of them at once (LONG_JOB_SLOTS, see "
        "docs/architecture.md), "
        f"so short jobs always find a slot. Time limits: {listed}.",
        "enum": kinds(),
        "x-time-limits": limits,
    }


class JobIn(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    description = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=10_000)
    )
    scheduled_time = UtcDateTime(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "When to run it: ISO 8601 with an offset, in the future. "
            "Omitted or null: now (a free worker takes it at once)."
        },
    )
    kind = fields.String(load_default="echo", validate=_known_kind, metadata=_kind_metadata())
    # No `keys=` field: JSON keys are strings already, and checking each one again costs
    # ~2 µs a key (a params object may have thousands).
    params = fields.Dict(
        load_default=dict,
        metadata={"description": "The processor's input, validated by the kind's own schema."},
    )
    priority = fields.Integer(
        load_default=0,
        strict=True,
        validate=validate.Range(min=-MAX_PRIORITY, max=MAX_PRIORITY),
        metadata={"description": "Among jobs due at the same time, higher runs first."},
    )
    max_attempts = fields.Integer(
        load_default=3,
        strict=True,
        validate=validate.Range(min=1, max=10),
        metadata={
            "description": "Attempts before the job is failed; retries back off "
            "exponentially from JOB_RETRY_BASE_SECONDS (see docs/configuration.md)."
        },
    )

    @validates_schema(skip_on_field_errors=False)
    def params_fit_kind(self, data: dict[str, Any], **kwargs: Any) -> None:
        processor = get_processor(data.get("kind", ""))
        if processor is None or not isinstance(data.get("params"), dict):
            return
        try:
            check_shape(processor.schema, data["params"])
            processor.load_params(data["params"])
        except ValidationError as error:
            raise ValidationError(error.messages, field_name="params") from error

    @post_load
    def load_params(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        processor = get_processor(data["kind"])
        assert processor is not None  # the validators above ran
        data["params"] = processor.load_params(data["params"])
        return data


MAX_BATCH_JOBS = 100


class JobBatchIn(Schema):
    jobs = fields.List(
        fields.Nested(JobIn),
        required=True,
        validate=validate.Length(min=1, max=MAX_BATCH_JOBS),
        metadata={
            "description": f"1 to {MAX_BATCH_JOBS} jobs, each as the body of POST /api/jobs/. "
            "Errors name the job by its index: `errors.json.jobs.<i>.<field>`."
        },
    )


class IdempotencyHeaders(Schema):
    class Meta:
        unknown = EXCLUDE

    idempotency_key = fields.String(
        data_key="Idempotency-Key",
        load_default=None,
        validate=validate.Length(min=1, max=255),
        metadata={
            "description": "Repeating a POST with the same key and body returns the job the "
            "first one created (201 again, with `Idempotent-Replayed: true`); the same key "
            "with another body is refused with 422. Keys are per user."
        },
    )


class JobOpenOut(Schema):
    """A job as everybody who may bid on it sees it."""

    id = fields.Integer(dump_only=True)
    name = fields.String()
    description = fields.String(allow_none=True)
    kind = fields.String(metadata={"enum": kinds()})
    scheduled_time = fields.AwareDateTime(format="iso")
    status = fields.String(metadata={"enum": STATUS_VALUES})
    priority = fields.Integer()
    max_attempts = fields.Integer()
    attempts = fields.Integer(metadata={"description": "Attempts started so far."})
    owner_id = fields.Integer()
    assignee_id = fields.Integer(allow_none=True)
    created_at = fields.AwareDateTime(format="iso")
    updated_at = fields.AwareDateTime(format="iso")
    started_at = fields.AwareDateTime(
        format="iso", allow_none=True, metadata={"description": "Start of the latest attempt."}
    )
    finished_at = fields.AwareDateTime(format="iso", allow_none=True)


class JobOut(JobOpenOut):
    params = fields.Raw()
    due_date = fields.Date(
        allow_none=True,
        metadata={
            "description": "For a job handed to a person: the accepted bid's "
            "proposed_deadline. The assignee is reminded a day before; the owner is told "
            "when it passes undelivered (at its end in UTC-12)."
        },
    )
    last_error = fields.String(
        allow_none=True,
        metadata={"description": "Error of the latest failed attempt; kept after a later success."},
    )


class JobResultOut(Schema):
    job_id = fields.Integer()
    output = fields.Raw(allow_none=True, metadata={"description": "The processor's return value."})
    error_message = fields.String(allow_none=True)
    completed_at = fields.AwareDateTime(format="iso")
    duration_ms = fields.Integer(
        metadata={
            "description": "Duration of the final attempt; for a delivery, from the award "
            "to the delivery."
        }
    )
    note = fields.String(
        allow_none=True, metadata={"description": "The assignee's note with a delivery."}
    )


class JobAttemptOut(Schema):
    attempt = fields.Integer(
        attribute="number",
        metadata={
            "description": "The job's attempt counter when it began (1, 2, ...); a failed "
            "job retried by hand counts from 1 again."
        },
    )
    started_at = fields.AwareDateTime(format="iso")
    finished_at = fields.AwareDateTime(format="iso", allow_none=True)
    duration_ms = fields.Integer(
        allow_none=True, metadata={"description": "Null while the attempt is running."}
    )
    outcome = fields.String(
        metadata={
            "enum": [outcome.value for outcome in AttemptOutcome],
            "description": "`lost`: its worker stopped (died, or was killed) during it; the "
            "stalled-job check gave it up and queued the next attempt.",
        }
    )
    error = fields.String(allow_none=True)


MAX_NOTE_LENGTH = 10_000


class DeliveryIn(Schema):
    output = fields.Dict(
        required=True,
        metadata={
            "description": "The work, as a JSON object: it becomes the job's result output "
            "(GET /api/jobs/<id>/result/). Its size as JSON is limited by "
            "MAX_DELIVERY_OUTPUT_BYTES (see docs/configuration.md)."
        },
    )
    note = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=MAX_NOTE_LENGTH),
        metadata={"description": "A note to the owner, sent with the delivery email."},
    )


class JobUpdateIn(Schema):
    """Every field optional; at least one. `kind` cannot change; `params` are checked
    against the job's kind."""

    name = fields.String(validate=validate.Length(min=1, max=200))
    description = fields.String(allow_none=True, validate=validate.Length(max=10_000))
    scheduled_time = UtcDateTime(
        allow_none=True,
        metadata={
            "description": "The new time, in the future; null: now. The queue entry moves "
            "with it, in the same transaction."
        },
    )
    params = fields.Dict()
    priority = fields.Integer(
        strict=True, validate=validate.Range(min=-MAX_PRIORITY, max=MAX_PRIORITY)
    )
    max_attempts = fields.Integer(strict=True, validate=validate.Range(min=1, max=10))

    @validates_schema
    def require_a_change(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data:
            raise ValidationError(
                "Give at least one of: name, description, scheduled_time, params, priority, "
                "max_attempts."
            )


def _aware(description: str) -> UtcDateTime:
    return UtcDateTime(metadata={"description": description})


class JobFilter(Schema):
    """The job lists' filters (a bulk action of the operations console takes them too)."""

    status = fields.List(
        fields.String(validate=validate.OneOf(STATUS_VALUES)),
        metadata={"description": "Repeat to match any of several statuses."},
    )
    kind = fields.String(validate=_known_kind, metadata={"enum": kinds()})
    scheduled_after = _aware("scheduled_time >= this")
    scheduled_before = _aware("scheduled_time < this")
    created_after = _aware("created_at >= this")
    created_before = _aware("created_at < this")
    q = fields.String(
        validate=validate.Length(min=1, max=200),
        metadata={"description": "Case-insensitive search in name and description."},
    )


class JobQueryArgs(JobFilter):
    class Meta:
        unknown = EXCLUDE  # page and page_size belong to the pagination schema

    sort = fields.String(
        load_default=DEFAULT_SORT,
        validate=validate.OneOf(SORT_KEYS),
        metadata={
            "description": "created_at, scheduled_time, status or name (case-insensitive); "
            "`-` prefix for descending. Default -created_at."
        },
    )


class KindOut(Schema):
    """A job kind, and how to fill in its params."""

    kind = fields.String(metadata={"example": "wordcount"})
    description = fields.String()
    runs_in_queue = fields.Boolean(
        metadata={"description": "False for `manual`: a person does the job, never the queue."}
    )
    time_limit = fields.Float(
        allow_none=True,
        metadata={"description": "Seconds an attempt may run; null for a kind done by a person."},
    )
    long = fields.Boolean(metadata={"description": "A long kind (see `kind` of a job)."})
    params_schema = fields.Dict(
        metadata={
            "description": "JSON Schema of `params`, generated from the kind's own schema: "
            "what POST /api/jobs/ checks. A schema without `properties` takes any JSON object."
        }
    )

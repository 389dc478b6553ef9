"""The `data` of each event type: the resource as its recipient may see it through the API,
dumped with the API's own schemas (one definition of each resource's shape)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, fields, validate

from jobboard.bids.schemas import BidOut
from jobboard.bids.service import shown
from jobboard.events.catalogue import EventType
from jobboard.jobs.schemas import JobOpenOut, JobOut, JobResultOut
from jobboard.models import Bid, Job
from jobboard.plans.schemas import PlanOut
from jobboard.reviews.schemas import ReviewOut

JOB_DESCRIPTION = (
    "The job as the recipient may see it: every field for its owner and assignee, the "
    "public fields only (no params, due_date or last_error) for anybody else. When the "
    "event would be over 64 KiB, the result's output is left out and `result_url` points "
    "at it (then, if still too large, the params are left out and `params_omitted` is true)."
)


class EventJob(JobOut):
    result_url = fields.String(
        metadata={"description": "Where the result is, when its output was left out."}
    )
    params_omitted = fields.Boolean(
        metadata={"description": "True when the params were left out for size."}
    )


def job_field() -> fields.Nested:
    return fields.Nested(EventJob, required=True, metadata={"description": JOB_DESCRIPTION})


class JobData(Schema):
    job = job_field()


class JobCompletedData(JobData):
    by = fields.String(
        required=True,
        validate=validate.OneOf(["processor", "assignee"]),
        metadata={"description": "Who completed it: its processor, or its assignee's delivery."},
    )
    result = fields.Nested(JobResultOut, required=True)


class JobRetryingData(JobData):
    next_attempt_at = fields.AwareDateTime(
        format="iso",
        required=True,
        metadata={"description": "When the next attempt is due (the retry's backoff)."},
    )


class JobReleasedData(JobData):
    by = fields.String(
        required=True,
        validate=validate.OneOf(["owner", "assignee"]),
        metadata={"description": "The assignee gave it back, or the owner took it away."},
    )


class JobDeadlineData(JobData):
    due_date = fields.Date(required=True)


class BidData(JobData):
    bid = fields.Nested(BidOut, required=True)


class ReviewData(JobData):
    review = fields.Nested(ReviewOut, required=True)


class PlanEndingData(Schema):
    plan = fields.Nested(PlanOut, required=True)
    ends_at = fields.AwareDateTime(format="iso", required=True)


class PlanEndedData(Schema):
    plan = fields.Nested(PlanOut, required=True, metadata={"description": "The plan now."})
    previous_plan = fields.String(required=True)


def _endpoint_schema() -> Schema:
    from jobboard.webhooks.schemas import WebhookEndpointOut

    return WebhookEndpointOut()


class WebhookDisabledData(Schema):
    endpoint = fields.Nested(_endpoint_schema, required=True)
    reason = fields.String(
        required=True,
        validate=validate.OneOf(["gone", "failing"]),
        metadata={
            "description": "`gone`: it answered 410; `failing`: no success for "
            "WEBHOOK_DISABLE_AFTER_SECONDS while its deliveries failed."
        },
    )


class WebhookTestData(Schema):
    endpoint_id = fields.Integer(required=True, attribute="endpoint.id")
    message = fields.String(required=True)


def schema_of(spec: EventType) -> type[Schema]:
    """The schema of a catalogue entry's data (the entry names it)."""
    schema = globals().get(spec.payload)
    if not (isinstance(schema, type) and issubclass(schema, Schema)):
        raise LookupError(f"{spec.name}: no payload schema {spec.payload!r} in {__name__}")
    return schema


def event_data(spec: EventType, resources: Mapping[str, Any], user_id: int) -> dict[str, Any]:
    """The data of a `spec` event about `resources`, as user `user_id` may see them through
    the API: a bid with its bidder's public profile, the job in full for its owner and
    assignee and its public fields for anybody else (installed by create_app into
    `jobboard.events.building`)."""
    resources = dict(resources)
    if isinstance(resources.get("bid"), Bid):
        resources["bid"] = shown([resources["bid"]])[0]
    data = _dumper(schema_of(spec)).dump(
        {key: value for key, value in resources.items() if key != "job"}
    )
    if "job" in resources:
        data["job"] = job_as_seen_by(resources["job"], user_id)
    return data


def job_as_seen_by(job: Job, user_id: int) -> dict[str, Any]:
    """Every field for the job's owner and assignee, the public ones for anybody else."""
    schema = JobOut if user_id in (job.owner_id, job.assignee_id) else JobOpenOut
    return _dumper(schema).dump(job)


@functools.cache
def _dumper(schema: type[Schema]) -> Schema:
    # One instance per schema: building one copies every declared field (deepcopy), which
    # cost more than the dump itself when the batched queue writes an event per job. A
    # marshmallow schema holds no state between dumps.
    return schema()

"""The `data` of each event type: the resource as its recipient may see it through the API,
dumped with the API's own schemas (one definition of each resource's shape)."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate

from jobboard.bids.schemas import BidOut
from jobboard.jobs.schemas import JobOut, JobResultOut
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


def dump(schema: type[Schema], data: dict[str, Any]) -> dict[str, Any]:
    return schema().dump(data)

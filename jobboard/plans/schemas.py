from __future__ import annotations

from marshmallow import Schema, fields


class PlanOut(Schema):
    name = fields.String(dump_only=True)
    max_running_jobs = fields.Integer(
        dump_only=True, metadata={"description": "Your jobs the queue runs at once."}
    )
    max_open_jobs = fields.Integer(
        dump_only=True, metadata={"description": "Pending + in-progress jobs; more is 429."}
    )
    jobs_per_day = fields.Integer(
        dump_only=True, metadata={"description": "Jobs created per UTC day; more is 429."}
    )
    max_params_bytes = fields.Integer(
        dump_only=True,
        metadata={"description": "Size of a job's params as compact UTF-8 JSON; more is 422."},
    )
    bids_per_day = fields.Integer(
        dump_only=True, metadata={"description": "Bids placed per UTC day; more is 429."}
    )
    max_webhook_endpoints = fields.Integer(
        dump_only=True, metadata={"description": "Webhook endpoints; one more is 429."}
    )


class UsageOut(Schema):
    running_jobs = fields.Integer(dump_only=True)
    open_jobs = fields.Integer(dump_only=True)
    jobs_today = fields.Integer(
        dump_only=True,
        metadata={
            "description": "Jobs created and failed jobs retried since 00:00 UTC: what "
            "jobs_per_day counts."
        },
    )
    bids_today = fields.Integer(dump_only=True, metadata={"description": "Since 00:00 UTC."})


class PlanStatusOut(Schema):
    plan = fields.Nested(PlanOut, dump_only=True)
    usage = fields.Nested(UsageOut, dump_only=True)
    renews_at = fields.AwareDateTime(
        dump_only=True,
        allow_none=True,
        metadata={"description": "End of the current subscription; null on free (no end)."},
    )

"""Schemas of the webhooks API."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from jobboard.events.outbox import envelope
from jobboard.models import DeliveryStatus
from jobboard.request_rules import UtcDateTime
from jobboard.webhooks.targets import MAX_URL_LENGTH

MAX_DESCRIPTION_LENGTH = 1000
DELIVERY_STATUSES = [status.value for status in DeliveryStatus]


def _known_type(name: str) -> None:
    from jobboard.events.catalogue import CATALOGUE

    if name not in CATALOGUE or name == "webhook.test":
        raise ValidationError("Unknown event type; GET /api/events/types/ lists them.")


def _types_field(**kwargs: Any) -> fields.List:
    from jobboard.events.catalogue import FEED_TYPE_NAMES

    return fields.List(
        fields.String(validate=_known_type, metadata={"enum": FEED_TYPE_NAMES}),
        allow_none=True,
        validate=validate.Length(min=1, max=len(FEED_TYPE_NAMES)),
        metadata={
            "description": "The event types this endpoint receives; null (the default): "
            "every type, those added later included. webhook.test is always delivered."
        },
        **kwargs,
    )


def _url_field(**kwargs: Any) -> fields.String:
    return fields.String(
        validate=validate.Length(min=1, max=MAX_URL_LENGTH),
        metadata={
            "description": "https only, no credentials, at most 2,000 characters; its host "
            "must resolve to public addresses only (checked now and at every delivery)."
        },
        **kwargs,
    )


def _description_field(**kwargs: Any) -> fields.String:
    return fields.String(
        allow_none=True, validate=validate.Length(max=MAX_DESCRIPTION_LENGTH), **kwargs
    )


class WebhookEndpointIn(Schema):
    url = _url_field(required=True)
    types = _types_field(load_default=None)
    description = _description_field(load_default=None)


class WebhookEndpointPatchIn(Schema):
    url = _url_field()
    types = _types_field()
    description = _description_field()
    enabled = fields.Boolean(
        metadata={
            "description": "true enables it again and clears its failure state; false "
            "stops its deliveries (pending ones wait until it is enabled)."
        }
    )

    @validates_schema
    def require_a_change(self, data: dict[str, Any], **kwargs: Any) -> None:
        if not data:
            raise ValidationError("Give at least one of: url, types, description, enabled.")


class WebhookEndpointOut(Schema):
    id = fields.Integer()
    url = fields.String()
    types = fields.List(fields.String(), allow_none=True)
    description = fields.String(allow_none=True)
    enabled = fields.Boolean()
    created_at = fields.AwareDateTime(format="iso")
    updated_at = fields.AwareDateTime(format="iso")
    disabled_at = fields.AwareDateTime(format="iso", allow_none=True)
    disabled_reason = fields.String(
        allow_none=True,
        metadata={
            "enum": ["gone", "failing", "by_owner", None],
            "description": "gone: it answered 410; failing: no success for "
            "WEBHOOK_DISABLE_AFTER_SECONDS; by_owner: you disabled it.",
        },
    )
    failing_since = fields.AwareDateTime(
        format="iso",
        allow_none=True,
        metadata={"description": "The first failure since the last success."},
    )
    last_success_at = fields.AwareDateTime(format="iso", allow_none=True)


class WebhookEndpointCreatedOut(WebhookEndpointOut):
    secret = fields.String(
        metadata={
            "description": "whsec_ + base64 of 32 random bytes. Shown in this answer only: "
            "keep it to verify the signatures."
        }
    )


class SecretOut(Schema):
    secret = fields.String(
        metadata={"description": "The new secret; the old one also signs for 24 hours."}
    )


class TestSentOut(Schema):
    event_id = fields.String(metadata={"description": "The webhook.test event's id."})


class DeliveryQueryArgs(Schema):
    status = fields.String(validate=validate.OneOf(DELIVERY_STATUSES))


class AttemptOut(Schema):
    at = fields.AwareDateTime(format="iso", attribute="attempted_at")
    response_status = fields.Integer(allow_none=True)
    duration_ms = fields.Integer()
    error = fields.String(allow_none=True)
    response_body = fields.String(
        allow_none=True, metadata={"description": "The first 1 KiB of the answer's body."}
    )


class DeliveryOut(Schema):
    id = fields.Integer()
    event_id = fields.String(attribute="public_event_id")
    event_type = fields.String(attribute="event.type")
    status = fields.String(metadata={"enum": DELIVERY_STATUSES})
    attempts = fields.Integer(metadata={"description": "Attempts made, every round counted."})
    next_attempt_at = fields.AwareDateTime(
        format="iso", allow_none=True, metadata={"description": "Null once it is not pending."}
    )
    created_at = fields.AwareDateTime(format="iso")
    last_attempt = fields.Nested(AttemptOut, allow_none=True, attribute="last_attempt_row")


class DeliveryDetailOut(DeliveryOut):
    attempt_history = fields.List(
        fields.Nested(AttemptOut),
        attribute="attempt_rows",
        metadata={"description": "Every attempt, oldest first."},
    )
    event = fields.Method("event_envelope", metadata={"type": "object"})

    def event_envelope(self, delivery: Any) -> dict[str, Any]:
        """The event, as its body is sent."""
        event = delivery.event
        return envelope(event.txid, event.id, event.type, event.created_at, event.data)


class RecoverIn(Schema):
    since = UtcDateTime(required=True)
    until = UtcDateTime(load_default=None, allow_none=True)

    @validates_schema
    def ordered(self, data: dict[str, Any], **kwargs: Any) -> None:
        if data.get("until") is not None and data["until"] <= data["since"]:
            raise ValidationError("until must be after since.", field_name="until")


class RecoverOut(Schema):
    resent = fields.Integer(metadata={"description": "Failed deliveries sent again."})

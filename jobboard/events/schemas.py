"""Schemas of the events API."""

from __future__ import annotations

from marshmallow import EXCLUDE, Schema, fields, validate

from jobboard.events.catalogue import FEED_TYPE_NAMES, TYPE_NAMES
from jobboard.events.feed import DEFAULT_LIMIT, MAX_LIMIT


class EventQueryArgs(Schema):
    class Meta:
        unknown = EXCLUDE

    after = fields.String(
        validate=validate.Length(max=64),
        metadata={
            "description": "An event id: only events after it. Omitted: from the oldest "
            "event still kept (EVENT_RETENTION_DAYS)."
        },
    )
    types = fields.List(
        fields.String(validate=validate.OneOf(FEED_TYPE_NAMES)),
        metadata={"description": "Repeatable: only events of these types."},
    )
    limit = fields.Integer(
        load_default=DEFAULT_LIMIT, validate=validate.Range(min=1, max=MAX_LIMIT)
    )


class EventOut(Schema):
    id = fields.String(
        metadata={
            "description": "evt_ + 32 hex digits; the same `webhook-id` on every webhook "
            "attempt. Ids sort in the feed's order.",
            "example": "evt_00000000000003e800000000000004d2",
        }
    )
    type = fields.String(metadata={"enum": TYPE_NAMES})
    timestamp = fields.String(
        metadata={"format": "date-time", "description": "When it happened (UTC)."}
    )
    data = fields.Dict(
        metadata={
            "description": "The resource as you may see it through the API; its shape per "
            "type is the schema `<Type>EventData` (GET /api/events/types/ has examples)."
        }
    )


class EventTypeOut(Schema):
    type = fields.String(attribute="name", metadata={"enum": TYPE_NAMES})
    recipient = fields.String(metadata={"description": "Who hears of it."})
    description = fields.String()
    channels = fields.List(
        fields.String(validate=validate.OneOf(["feed", "webhooks", "email"])),
        metadata={"description": "Where it goes: the feed, webhooks, email."},
    )
    example = fields.Method("example_envelope", metadata={"type": "object"})

    def example_envelope(self, event_type: object) -> dict:
        return {
            "id": "evt_00000000000003e800000000000004d2",
            "type": event_type.name,  # type: ignore[attr-defined]
            "timestamp": "2026-12-01T09:00:01+00:00",
            "data": event_type.example,  # type: ignore[attr-defined]
        }

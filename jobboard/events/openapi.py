"""The events in the OpenAPI document, generated from the catalogue: a schema per event
type (`<Type>Event`, its data `<Type>EventData`) and, under `x-webhooks`, the request a
webhook endpoint receives for each (OpenAPI 3.1's `webhooks`, in this 3.0 document as an
extension; the schemas are in `components` either way)."""

from __future__ import annotations

import re
from typing import Any

from marshmallow import Schema, fields

from jobboard.events.catalogue import TYPES, EventType
from jobboard.events.payloads import schema_of

SIGNATURE_HEADERS = [
    {
        "name": "webhook-id",
        "in": "header",
        "required": True,
        "description": "The event id: the same on every attempt and resend. Deduplicate by it.",
        "schema": {"type": "string"},
    },
    {
        "name": "webhook-timestamp",
        "in": "header",
        "required": True,
        "description": "Unix seconds of this attempt; refuse ones far from your clock.",
        "schema": {"type": "integer"},
    },
    {
        "name": "webhook-signature",
        "in": "header",
        "required": True,
        "description": 'v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}" '
        "keyed by the base64-decoded secret after whsec_>; two, space-separated, during a "
        "secret rotation.",
        "schema": {"type": "string"},
    },
]


def pascal(type_name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[._]", type_name))


def envelope_schema(event_type: EventType) -> type[Schema]:
    """The event's envelope, with its type and its data's schema."""
    name = pascal(event_type.name)
    data = type(f"{name}EventData", (schema_of(event_type),), {})
    return type(
        f"{name}Event",
        (Schema,),
        {
            "id": fields.String(required=True, metadata={"description": "evt_ + 32 hex digits"}),
            "type": fields.String(required=True, metadata={"enum": [event_type.name]}),
            "timestamp": fields.String(required=True, metadata={"format": "date-time"}),
            "data": fields.Nested(data, required=True),
        },
    )


def document_events(api: Any) -> None:
    webhooks: dict[str, Any] = {}
    for event_type in TYPES:
        name = pascal(event_type.name)
        api.spec.components.schema(f"{name}Event", schema=envelope_schema(event_type))
        webhooks[event_type.name] = {
            "post": {
                "operationId": f"receive{name}",
                "summary": f"{event_type.name}, to the {event_type.recipient}",
                "description": event_type.description,
                "parameters": SIGNATURE_HEADERS,
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"$ref": f"#/components/schemas/{name}Event"}
                        }
                    },
                },
                "responses": {
                    "2XX": {"description": "Received: any 2xx within the timeout is a success."},
                    "410": {"description": "Gone: the endpoint is disabled at once."},
                },
            }
        }
    api.spec.options["x-webhooks"] = webhooks

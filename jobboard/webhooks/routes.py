"""Webhook endpoints and their deliveries. Every call needs a verified user; somebody
else's endpoint answers 404."""

from __future__ import annotations

from functools import partial
from typing import Any

from sqlalchemy import Select

from jobboard.auth.tokens import VerifiedUserView, caller
from jobboard.models import WebhookDelivery, WebhookEndpoint
from jobboard.view_helpers import (
    RETRY_AFTER,
    Blueprint,
    SelectPage,
    documented_error,
    verified_user_doc,
)
from jobboard.webhooks import service
from jobboard.webhooks.schemas import (
    DeliveryDetailOut,
    DeliveryOut,
    DeliveryQueryArgs,
    RecoverIn,
    RecoverOut,
    SecretOut,
    TestSentOut,
    WebhookEndpointCreatedOut,
    WebhookEndpointIn,
    WebhookEndpointOut,
    WebhookEndpointPatchIn,
)

blp = Blueprint(
    "webhooks",
    __name__,
    url_prefix="/api",
    description=(
        "Webhook endpoints: your own URLs that receive your events (GET /api/events/types/) "
        "as signed POST requests, the Standard Webhooks way: headers `webhook-id` (the "
        "event id, the same on every attempt and resend), `webhook-timestamp` (Unix "
        "seconds of the attempt) and `webhook-signature` (`v1,<base64 HMAC-SHA256 of "
        '"{id}.{timestamp}.{body}">` keyed by the decoded secret; two, space-separated, for '
        "24 h after a rotation); the body is the event as GET /api/events/ lists it. A 2xx "
        "answer within WEBHOOK_TIMEOUT_SECONDS (15) is a success; redirects are not "
        "followed; 410 disables the endpoint; 429 and 503 may ask for a delay with "
        "Retry-After (at most an hour). Failed attempts are retried after "
        "WEBHOOK_RETRY_SCHEDULE (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h; +-10 %), then "
        "the delivery is failed; an endpoint with no success for "
        "WEBHOOK_DISABLE_AFTER_SECONDS (5 days) is then disabled, and you get a "
        "webhook.disabled event and an email. Delivery is at least once, in no promised "
        "order: deduplicate by webhook-id. The schemas `<Type>EventData` describe each "
        "event's data; `x-webhooks` in this document describes the requests. docs/"
        "webhooks.md shows how to verify them."
    ),
)

error = partial(documented_error, blp)
authenticated = verified_user_doc(blp)
NOT_YOURS = "No such webhook endpoint of yours"
DELIVERY_ID = "<int(max=9223372036854775807):delivery_id>"


@blp.route("/webhooks/")
class WebhookEndpoints(VerifiedUserView):
    @authenticated
    @blp.etag
    @blp.response(200, WebhookEndpointOut(many=True))
    @blp.paginate(SelectPage)
    @blp.doc(operationId="listWebhookEndpoints")
    def get(self) -> Select[tuple[WebhookEndpoint]]:
        """List your webhook endpoints"""
        return service.endpoints_of(caller())

    @authenticated
    @blp.arguments(WebhookEndpointIn)
    @blp.response(201, WebhookEndpointCreatedOut)
    @error(
        422,
        "A bad URL (not https, credentials, over 2,000 characters, a host that is "
        "not public) or an unknown event type",
    )
    @error(429, "Over your plan's max_webhook_endpoints (GET /api/me/plan/)", headers=RETRY_AFTER)
    @blp.doc(operationId="createWebhookEndpoint")
    def post(self, data: dict[str, Any]) -> service.CreatedEndpoint:
        """Add a webhook endpoint; its secret is in this answer only"""
        return service.create_endpoint(caller(), data["url"], data["types"], data["description"])


@blp.route("/webhooks/<int:endpoint_id>/")
class WebhookEndpointById(VerifiedUserView):
    @authenticated
    @blp.etag
    @blp.response(200, WebhookEndpointOut)
    @error(404, NOT_YOURS)
    @blp.doc(operationId="getWebhookEndpoint")
    def get(self, endpoint_id: int) -> WebhookEndpoint:
        """Read a webhook endpoint"""
        return service.get_endpoint(caller(), endpoint_id)

    @authenticated
    @blp.arguments(WebhookEndpointPatchIn)
    @blp.response(200, WebhookEndpointOut)
    @error(404, NOT_YOURS)
    @error(422, "A bad URL or an unknown event type, or nothing to change")
    @blp.doc(operationId="updateWebhookEndpoint")
    def patch(self, changes: dict[str, Any], endpoint_id: int) -> WebhookEndpoint:
        """Change url, types, description or enabled (enabling clears the failure state)"""
        return service.update_endpoint(caller(), endpoint_id, changes)

    @authenticated
    @blp.response(204)
    @error(404, NOT_YOURS)
    @blp.doc(operationId="deleteWebhookEndpoint")
    def delete(self, endpoint_id: int) -> None:
        """Delete a webhook endpoint; its pending deliveries are dropped"""
        service.delete_endpoint(caller(), endpoint_id)


@blp.route("/webhooks/<int:endpoint_id>/rotate-secret/")
class RotateSecret(VerifiedUserView):
    @authenticated
    @blp.response(200, SecretOut)
    @error(404, NOT_YOURS)
    @blp.doc(operationId="rotateWebhookSecret")
    def post(self, endpoint_id: int) -> dict[str, str]:
        """A new secret; for 24 h deliveries are signed with both the new and the old"""
        return {"secret": service.rotate_secret(caller(), endpoint_id)}


@blp.route("/webhooks/<int:endpoint_id>/test/")
class TestEndpoint(VerifiedUserView):
    @authenticated
    @blp.response(202, TestSentOut)
    @error(404, NOT_YOURS)
    @blp.doc(operationId="testWebhookEndpoint")
    def post(self, endpoint_id: int) -> dict[str, str]:
        """Send a webhook.test event to this endpoint only"""
        return service.send_test(caller(), endpoint_id)


class DeliveriesPage(SelectPage):
    """A page of deliveries, each with its last attempt (one query for the page)."""

    @property
    def items(self) -> list[WebhookDelivery]:
        return service.with_last_attempts(super().items)


@blp.route("/webhooks/<int:endpoint_id>/deliveries/")
class Deliveries(VerifiedUserView):
    @authenticated
    @blp.etag
    @blp.arguments(DeliveryQueryArgs, location="query")
    @blp.response(200, DeliveryOut(many=True))
    @blp.paginate(DeliveriesPage)
    @error(404, NOT_YOURS)
    @error(422, "An unknown status")
    @blp.doc(operationId="listWebhookDeliveries")
    def get(self, args: dict[str, Any], endpoint_id: int) -> Select[tuple[WebhookDelivery]]:
        """The endpoint's deliveries, newest first, with their last attempt"""
        return service.deliveries_of(caller(), endpoint_id, args.get("status"))


@blp.route(f"/webhooks/<int:endpoint_id>/deliveries/{DELIVERY_ID}/")
class DeliveryById(VerifiedUserView):
    @authenticated
    @blp.etag
    @blp.response(200, DeliveryDetailOut)
    @error(404, "No such delivery of an endpoint of yours")
    @blp.doc(operationId="getWebhookDelivery")
    def get(self, endpoint_id: int, delivery_id: int) -> WebhookDelivery:
        """A delivery with every attempt and the event it carries"""
        return service.get_delivery(caller(), endpoint_id, delivery_id)


@blp.route(f"/webhooks/<int:endpoint_id>/deliveries/{DELIVERY_ID}/resend/")
class ResendDelivery(VerifiedUserView):
    @authenticated
    @blp.response(202, DeliveryOut)
    @error(404, "No such delivery of an endpoint of yours")
    @blp.doc(operationId="resendWebhookDelivery")
    def post(self, endpoint_id: int, delivery_id: int) -> WebhookDelivery:
        """Send a delivery again: a new round of attempts, the same webhook-id"""
        return service.resend(caller(), endpoint_id, delivery_id)


@blp.route("/webhooks/<int:endpoint_id>/recover/")
class Recover(VerifiedUserView):
    @authenticated
    @blp.arguments(RecoverIn)
    @blp.response(202, RecoverOut)
    @error(404, NOT_YOURS)
    @error(422, "since missing, a naive timestamp, or until not after since")
    @blp.doc(operationId="recoverWebhookDeliveries")
    def post(self, data: dict[str, Any], endpoint_id: int) -> dict[str, int]:
        """Send again every failed delivery of the endpoint created in [since, until)"""
        return service.recover(caller(), endpoint_id, data["since"], data["until"])

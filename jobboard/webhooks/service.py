"""The rules of webhook endpoints: who may see and change which, the plan's limit, secrets
and their rotation, test events, and sending deliveries again. Delivering is
`jobboard.webhooks.delivery`'s; deliveries are created by the database when events are
written (a trigger on `events`, migrations/sql/events_webhooks_0010.sql).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from sqlalchemy import Select, select, text, update
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.orm import selectinload

from jobboard import queue, quotas
from jobboard.errors import NotFound, Unprocessable
from jobboard.events.outbox import build_event, public_id, write_events
from jobboard.extensions import db
from jobboard.locking import locked
from jobboard.models import (
    DeliveryStatus,
    Event,
    User,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    now_utc,
)
from jobboard.webhooks import signing, targets
from workers.app import webhook_endpoint_lock

ROTATION_OVERLAP = timedelta(hours=24)
ENDPOINT_NOT_FOUND = "No such webhook endpoint of yours."
DELIVERY_NOT_FOUND = "No such delivery of this endpoint."
TEST_MESSAGE = "A test event from jobboard: your endpoint receives and verifies our webhooks."
BY_OWNER = "by_owner"


@dataclass
class CreatedEndpoint:
    """An endpoint with its secret in plain text: only the answer that creates it has one."""

    endpoint: WebhookEndpoint
    secret: str

    def __getattr__(self, name: str) -> Any:
        return getattr(self.endpoint, name)


def _secret_key() -> str:
    return current_app.config["SECRET_KEY"]


def _checked_url(url: str) -> str:
    try:
        return targets.check_url(url, current_app.config["WEBHOOK_ALLOW_PRIVATE_URLS"])
    except targets.RefusedTarget as error:
        raise Unprocessable(str(error), errors={"json": {"url": [str(error)]}}) from None


def wake(endpoint_id: int) -> None:
    """Make sure the endpoint's delivery task runs now (one waiting entry at most)."""
    db.session.execute(
        text("SELECT jobboard_wake_webhook_endpoint(:endpoint_id, NULL)"),
        {"endpoint_id": endpoint_id},
    )


# --- endpoints ----------------------------------------------------------------------------


def create_endpoint(
    user: User, url: str, types: list[str] | None, description: str | None
) -> CreatedEndpoint:
    """A new endpoint of `user`, with a new secret; 429 over the plan's limit, 422 for a
    URL webhooks may not go to."""
    url = _checked_url(url)
    quotas.check_new_webhook_endpoint(user.id)
    secret = signing.new_secret()
    endpoint = WebhookEndpoint(
        user_id=user.id,
        url=url,
        types=_distinct(types),
        description=description,
        enabled=True,
        secret=signing.seal(secret, _secret_key()),
    )
    db.session.add(endpoint)
    db.session.commit()
    return CreatedEndpoint(endpoint, secret)


def endpoints_of(user: User) -> Select[tuple[WebhookEndpoint]]:
    return (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.user_id == user.id)
        .order_by(WebhookEndpoint.id)
    )


def get_endpoint(user: User, endpoint_id: int) -> WebhookEndpoint:
    endpoint = db.session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.user_id != user.id:
        raise NotFound(ENDPOINT_NOT_FOUND)
    return endpoint


def _locked_endpoint(user: User, endpoint_id: int) -> WebhookEndpoint:
    endpoint = locked(WebhookEndpoint, endpoint_id, WebhookEndpoint.user_id == user.id)
    if endpoint is None:
        raise NotFound(ENDPOINT_NOT_FOUND)
    return endpoint


def update_endpoint(user: User, endpoint_id: int, changes: Mapping[str, Any]) -> WebhookEndpoint:
    """Change url, types, description or enabled. Enabling clears the failure state
    (`failing_since`, the reason it was disabled) and sends what is pending."""
    endpoint = _locked_endpoint(user, endpoint_id)
    if "url" in changes:
        endpoint.url = _checked_url(changes["url"])
    if "types" in changes:
        endpoint.types = _distinct(changes["types"])
    if "description" in changes:
        endpoint.description = changes["description"]
    if changes.get("enabled") is True:
        endpoint.enabled = True
        endpoint.failing_since = None
        endpoint.disabled_at = None
        endpoint.disabled_reason = None
        db.session.flush()
        wake(endpoint.id)
    elif changes.get("enabled") is False and endpoint.enabled:
        endpoint.enabled = False
        endpoint.disabled_at = now_utc()
        endpoint.disabled_reason = BY_OWNER
    db.session.commit()
    return endpoint


def delete_endpoint(user: User, endpoint_id: int) -> None:
    """Delete the endpoint; its deliveries (pending ones too) and its waiting delivery
    task go with it. A task running for it finds it gone and stops."""
    endpoint = _locked_endpoint(user, endpoint_id)
    waiting = db.session.scalars(
        text("SELECT id FROM procrastinate_jobs WHERE queueing_lock = :lock AND status = 'todo'"),
        {"lock": webhook_endpoint_lock(endpoint.id)},
    ).all()
    for queue_job_id in waiting:
        queue.cancel(queue_job_id)
    db.session.delete(endpoint)
    db.session.commit()


def rotate_secret(user: User, endpoint_id: int) -> str:
    """A new secret; the current one keeps signing too for ROTATION_OVERLAP (24 h)."""
    endpoint = _locked_endpoint(user, endpoint_id)
    secret = signing.new_secret()
    endpoint.previous_secret = endpoint.secret
    endpoint.previous_secret_expires_at = now_utc() + ROTATION_OVERLAP
    endpoint.secret = signing.seal(secret, _secret_key())
    db.session.commit()
    return secret


def send_test(user: User, endpoint_id: int) -> dict[str, str]:
    """A webhook.test event for this endpoint alone (delivered even if its types leave
    webhook.test out; a disabled endpoint gets it once enabled)."""
    endpoint = _locked_endpoint(user, endpoint_id)
    (event_id,) = write_events(
        [build_event("webhook.test", endpoint=endpoint, message=TEST_MESSAGE)]
    )
    txid = db.session.scalar(select(Event.txid).where(Event.id == event_id))
    db.session.commit()
    return {"event_id": public_id(txid, event_id)}


def _distinct(types: list[str] | None) -> list[str] | None:
    return None if types is None else list(dict.fromkeys(types))


# --- deliveries ---------------------------------------------------------------------------


def deliveries_of(
    user: User, endpoint_id: int, status: str | None = None
) -> Select[tuple[WebhookDelivery]]:
    """The endpoint's deliveries, newest first."""
    endpoint = get_endpoint(user, endpoint_id)
    query = (
        select(WebhookDelivery)
        .where(WebhookDelivery.endpoint_id == endpoint.id)
        .options(selectinload(WebhookDelivery.event))
        .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id.desc())
    )
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    return query


def with_last_attempts(deliveries: Sequence[WebhookDelivery]) -> list[WebhookDelivery]:
    """`deliveries` as the API shows them: each with its last attempt (one query for all of
    them, `last_attempt_row`) and its event's public id (`public_event_id`)."""
    deliveries = list(deliveries)
    ids = [delivery.id for delivery in deliveries]
    last: dict[int, WebhookAttempt] = {}
    if ids:
        rows = db.session.scalars(
            select(WebhookAttempt)
            .where(WebhookAttempt.delivery_id.in_(ids))
            .ext(distinct_on(WebhookAttempt.delivery_id))
            .order_by(WebhookAttempt.delivery_id, WebhookAttempt.id.desc())
        )
        last = {attempt.delivery_id: attempt for attempt in rows}
    for delivery in deliveries:
        delivery.last_attempt_row = last.get(delivery.id)
        delivery.public_event_id = public_id(delivery.event.txid, delivery.event.id)
    return deliveries


def get_delivery(user: User, endpoint_id: int, delivery_id: int) -> WebhookDelivery:
    endpoint = get_endpoint(user, endpoint_id)
    delivery = db.session.scalar(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.endpoint_id == endpoint.id)
        .options(selectinload(WebhookDelivery.event), selectinload(WebhookDelivery.attempt_rows))
    )
    if delivery is None:
        raise NotFound(DELIVERY_NOT_FOUND)
    return with_last_attempts([delivery])[0]


_NEW_ROUND = {
    "status": DeliveryStatus.PENDING.value,
    "round_attempts": 0,
    "lease_expires_at": None,
}


def resend(user: User, endpoint_id: int, delivery_id: int) -> WebhookDelivery:
    """A new round of attempts for the delivery, now; same event, same webhook-id."""
    endpoint = _locked_endpoint(user, endpoint_id)
    delivery = locked(WebhookDelivery, delivery_id, WebhookDelivery.endpoint_id == endpoint.id)
    if delivery is None:
        raise NotFound(DELIVERY_NOT_FOUND)
    for key, value in _NEW_ROUND.items():
        setattr(delivery, key, value)
    delivery.next_attempt_at = now_utc()
    db.session.flush()
    wake(endpoint.id)
    db.session.commit()
    return with_last_attempts([delivery])[0]


def recover(
    user: User, endpoint_id: int, since: datetime, until: datetime | None
) -> dict[str, int]:
    """A new round for every failed delivery of the endpoint created in [since, until)."""
    endpoint = _locked_endpoint(user, endpoint_id)
    criteria = [
        WebhookDelivery.endpoint_id == endpoint.id,
        WebhookDelivery.status == DeliveryStatus.FAILED,
        WebhookDelivery.created_at >= since,
    ]
    if until is not None:
        criteria.append(WebhookDelivery.created_at < until)
    resent = db.session.execute(
        update(WebhookDelivery)
        .where(*criteria)
        .values(**_NEW_ROUND, next_attempt_at=now_utc())
        .execution_options(synchronize_session=False)
    ).rowcount
    if resent:
        wake(endpoint.id)
    db.session.commit()
    return {"resent": resent}

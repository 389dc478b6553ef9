"""Webhook delivery tasks: one endpoint's due deliveries (on the `webhooks` queue and its
own worker slots), and a periodic check that no pending delivery is left without a run."""

from __future__ import annotations

import logging

from procrastinate import JobContext

from config import config_for_environment
from jobboard.webhooks.delivery import DeliverySettings, deliver_endpoint, wake_pending
from workers.app import (
    DELIVER_WEBHOOKS_TASK,
    QUEUE_MAINTENANCE,
    QUEUE_WEBHOOKS,
    WAKE_WEBHOOKS_TASK,
    task_app,
)

_settings: list[DeliverySettings] = []

# httpx logs every request it sends at INFO. Deliveries go through h11 directly
# (jobboard.webhooks.client), but nothing the worker loads should add a log line per
# request at hundreds a second: each attempt is kept in webhook_attempts instead.
logging.getLogger("httpx").setLevel(logging.WARNING)


def settings() -> DeliverySettings:
    """Read from the configuration once per process."""
    if not _settings:
        _settings.append(DeliverySettings.from_config(config_for_environment()))
    return _settings[0]


@task_app.task(name=DELIVER_WEBHOOKS_TASK, queue=QUEUE_WEBHOOKS, pass_context=True)
async def deliver_webhooks(context: JobContext, endpoint_id: int) -> str:
    """Send endpoint `endpoint_id`'s due deliveries (jobboard.webhooks.delivery). Deferred
    in SQL by jobboard_wake_webhook_endpoint, with the endpoint's lock and queueing lock:
    one run at a time per endpoint, one waiting. Safe to re-run."""
    return await deliver_endpoint(context.app.connector.pool, endpoint_id, settings())


# Every 30 s: a run that failed (the database went away mid-run) or a worker killed
# mid-run leaves pending deliveries; this gives their endpoint a waiting entry again.
@task_app.periodic(cron="* * * * * */30", periodic_id="wake-webhooks")
@task_app.task(
    name=WAKE_WEBHOOKS_TASK,
    queue=QUEUE_MAINTENANCE,
    queueing_lock=WAKE_WEBHOOKS_TASK,
    pass_context=True,
)
async def wake_webhook_endpoints(context: JobContext, timestamp: int) -> int:
    """Make sure every enabled endpoint with pending deliveries has a run to come."""
    return await wake_pending(context.app.connector.pool)

"""Helpers of the events and webhooks tests: endpoints through the API, events written as
a change writes them, and one run of an endpoint's delivery task in this process (the
worker's own code, on an autocommit pool of the live database)."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from psycopg_pool import AsyncConnectionPool
from sqlalchemy import text

from config import TestConfig, libpq_url
from jobboard.events.outbox import EventRow, write_events
from jobboard.extensions import db
from jobboard.webhooks.delivery import DeliverySettings, EndpointRun, close_clients
from workers.app import autocommit, webhook_endpoint_lock

SETTINGS = DeliverySettings(
    timeout=2.0,
    schedule=(5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0),
    disable_after=432_000.0,
    allow_private=True,
    ca_bundle=None,
    secret_key=TestConfig.SECRET_KEY,
    run_seconds=10.0,
)


def settings(**changes: Any) -> DeliverySettings:
    return replace(SETTINGS, **changes)


def create_endpoint(
    client: FlaskClient, headers: dict[str, str], url: str, **fields: Any
) -> dict[str, Any]:
    response = client.post("/api/webhooks/", json={"url": url, **fields}, headers=headers)
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def emit(app: Flask, user_id: int, count: int = 1, type_name: str = "job.failed") -> list[int]:
    """`count` events for `user_id`, committed as a change would commit them."""
    rows = [
        EventRow(type_name, user_id, {"job": {"id": n, "name": f"job {n}"}}) for n in range(count)
    ]
    with app.app_context():
        ids = write_events(rows)
        db.session.commit()
    return ids


def run_endpoint(database_url: str, endpoint_id: int, config: DeliverySettings = SETTINGS) -> str:
    """One run of the `deliver_webhooks` task for the endpoint, in this process: its due
    waiting queue entry (if any) is taken and finished around the run, as a worker would."""

    async def run() -> str:
        pool = AsyncConnectionPool(
            libpq_url(database_url), min_size=1, max_size=4, configure=autocommit, open=False
        )
        await pool.open()
        try:
            async with pool.connection() as connection:
                taken = await connection.execute(
                    _TAKE, {"lock": webhook_endpoint_lock(endpoint_id)}
                )
                entry = await taken.fetchone()
            said = await EndpointRun(pool, endpoint_id, config).run()
            if entry is not None:
                async with pool.connection() as connection:
                    await connection.execute(_FINISH, {"id": entry[0]})
            return said
        finally:
            await close_clients()
            await pool.close()

    return asyncio.run(run())


_TAKE = (
    "UPDATE procrastinate_jobs SET status = 'doing' WHERE queueing_lock = %(lock)s"
    " AND status = 'todo' AND (scheduled_at IS NULL OR scheduled_at <= now()) RETURNING id"
)
_FINISH = "UPDATE procrastinate_jobs SET status = 'succeeded' WHERE id = %(id)s"


def deliveries(app: Flask, endpoint_id: int) -> list[dict[str, Any]]:
    with app.app_context():
        rows = (
            db.session.execute(
                text(
                    "SELECT id, status, attempts, round_attempts, next_attempt_at, lease_expires_at"
                    " FROM webhook_deliveries WHERE endpoint_id = :id ORDER BY id"
                ),
                {"id": endpoint_id},
            )
            .mappings()
            .all()
        )
        db.session.rollback()
    return [dict(row) for row in rows]


def attempts(app: Flask, endpoint_id: int) -> list[dict[str, Any]]:
    with app.app_context():
        rows = (
            db.session.execute(
                text(
                    "SELECT a.* FROM webhook_attempts a JOIN webhook_deliveries d"
                    " ON d.id = a.delivery_id WHERE d.endpoint_id = :id ORDER BY a.id"
                ),
                {"id": endpoint_id},
            )
            .mappings()
            .all()
        )
        db.session.rollback()
    return [dict(row) for row in rows]


def queue_entries(app: Flask, endpoint_id: int) -> list[dict[str, Any]]:
    with app.app_context():
        rows = (
            db.session.execute(
                text(
                    "SELECT id, status, scheduled_at, lock, queueing_lock, args, queue_name,"
                    " task_name FROM procrastinate_jobs WHERE queueing_lock = :lock ORDER BY id"
                ),
                {"lock": f"webhook-endpoint-{endpoint_id}"},
            )
            .mappings()
            .all()
        )
        db.session.rollback()
    return [dict(row) for row in rows]

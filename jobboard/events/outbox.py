"""Building and writing events: the one way every path writes them.

`build_event(type, **resources)` makes an event's row (its type, its recipient by the
catalogue's rule, its `data` dumped with the API's own schemas through `building`, whether
it wants an email); `write_events(rows)` writes any number of them in ONE statement on the
caller's transaction, within the types' email limits (`write_events_async` on a psycopg
connection, for the worker's autocommit paths). That statement also defers the email task
of the rows that want an email, and a trigger on `events` fans them out to webhook
deliveries: nobody hears of a change that did not commit, and a change never commits
without its events.

A batch that prepares its rows itself runs `WRITE_EVENTS_SQL` with `write_parameters(rows)`
in its own transaction.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from jobboard.events import building
from jobboard.events.catalogue import event_type
from jobboard.extensions import db
from workers.app import QUEUE_MAIL, SEND_EVENT_EMAIL_TASK

# An event (its envelope, as sent) stays under this; a larger job output is left out.
MAX_EVENT_BYTES = 64 * 1024
PUBLIC_ID_PREFIX = "evt_"
_PUBLIC_ID = re.compile(r"evt_([0-9a-f]{16})([0-9a-f]{16})")


@dataclass(frozen=True)
class EventRow:
    """An event ready to be written."""

    type: str
    user_id: int
    data: dict[str, Any]
    emailed: bool = False
    # Only for webhook.test: the one endpoint that hears of it.
    endpoint_id: int | None = None


def build_event(type_name: str, **resources: Any) -> EventRow:
    """The row of a `type_name` event about `resources` (the job, bid, review, plan or
    endpoint the change is about, as the catalogue's entry names them): addressed by the
    catalogue's recipient rule, its data as that recipient may see it through the API
    (`building.data_for`), kept under MAX_EVENT_BYTES."""
    spec = event_type(type_name)
    user_id = int(spec.to(resources))
    data = building.data_for(spec, resources, user_id)
    if "job" in data:
        _fit(data)
    endpoint_id = resources["endpoint"].id if type_name == "webhook.test" else None
    return EventRow(type_name, user_id, data, spec.wants_email(data), endpoint_id)


def _size(data: Mapping[str, Any]) -> int:
    # The envelope's other fields take well under 200 bytes.
    return len(json.dumps(data, separators=(",", ":")).encode()) + 200


def _fit(data: dict[str, Any]) -> None:
    """Under MAX_EVENT_BYTES: leave the result's output out (`job.result_url` points at
    it), then the params if that is not enough."""
    job = data["job"]
    if _size(data) > MAX_EVENT_BYTES and isinstance(data.get("result"), dict):
        data["result"].pop("output", None)
        job["result_url"] = f"/api/jobs/{job['id']}/result/"
    if _size(data) > MAX_EVENT_BYTES and "params" in job:
        del job["params"]
        job["params_omitted"] = True


def within_email_limits(rows: Sequence[EventRow]) -> list[EventRow]:
    """`rows`, each that wants an email keeping it only within its type's email limit
    (counted on the caller's transaction: an event that does not commit counts nothing)."""
    kept = []
    for row in rows:
        limit = event_type(row.type).email_limit
        if row.emailed and limit is not None and not limit.allows(row.data):
            row = replace(row, emailed=False)
        kept.append(row)
    return kept


# One statement: the ids are drawn first (so the email entries can name them), the events
# inserted (the trigger fans them out to webhook deliveries), the emails deferred through
# Procrastinate's own SQL function, in the order of the input.
WRITE_EVENTS_SQL = f"""
WITH input AS MATERIALIZED (
    SELECT nextval(pg_get_serial_sequence('events', 'id')) AS id, r.*
      FROM unnest(
          %(types)s::text[], %(user_ids)s::integer[], %(endpoint_ids)s::integer[],
          ARRAY(SELECT e.value FROM jsonb_array_elements(%(data)s::jsonb) WITH ORDINALITY AS e
                ORDER BY e.ordinality),
          %(emailed)s::boolean[]
      ) WITH ORDINALITY AS r(type, user_id, endpoint_id, data, emailed, ord)
), written AS (
    INSERT INTO events (id, type, user_id, endpoint_id, data)
    SELECT id, type, user_id, endpoint_id, data FROM input ORDER BY ord
), mailed AS (
    SELECT procrastinate_defer_jobs_v1(ARRAY(
        SELECT ROW('{QUEUE_MAIL}', '{SEND_EVENT_EMAIL_TASK}', 0, NULL, NULL,
                   jsonb_build_object('event_id', input.id), NULL
               )::procrastinate_job_to_defer_v1
          FROM input WHERE input.emailed ORDER BY input.ord
    )) AS entries
)
SELECT input.id FROM input, mailed ORDER BY input.ord
"""


def write_parameters(rows: Sequence[EventRow]) -> dict[str, list[Any]]:
    """`WRITE_EVENTS_SQL`'s parameters (psycopg style) for `rows`."""
    return {
        "types": [row.type for row in rows],
        "user_ids": [row.user_id for row in rows],
        "endpoint_ids": [row.endpoint_id for row in rows],
        # One JSON array, not a list of JSON texts: psycopg escapes each element of a
        # text-format array with a regular expression, which cost more than the dump.
        "data": json.dumps([row.data for row in rows]),
        "emailed": [row.emailed for row in rows],
    }


def write_events(rows: Sequence[EventRow]) -> list[int]:
    """Write `rows` on the session's current transaction (the change's); their ids."""
    if not rows:
        return []
    db.session.flush()  # the change's own rows first: the events may refer to them
    rows = within_email_limits(rows)
    written = db.session.connection().exec_driver_sql(WRITE_EVENTS_SQL, write_parameters(rows))
    return [row[0] for row in written]


def tell(type_name: str, **resources: Any) -> int:
    """Build and write one event about a change on the change's own transaction (flushed
    first, so the event shows the rows as they are written); its id."""
    db.session.flush()
    (event_id,) = write_events([build_event(type_name, **resources)])
    return event_id


async def write_events_async(connection: Any, rows: Sequence[EventRow]) -> list[int]:
    """Write `rows` on a psycopg async connection: in its current transaction, or as
    their own one in autocommit. No email limit is counted here (that needs the session):
    the types written this way have none."""
    if not rows:
        return []
    assert not any(row.emailed and event_type(row.type).email_limit for row in rows)
    async with connection.cursor() as cursor:
        await cursor.execute(WRITE_EVENTS_SQL, write_parameters(rows))
        return [row[0] for row in await cursor.fetchall()]


def public_id(txid: int, event_id: int) -> str:
    """The event's id for clients: its place in the feed's order, `evt_` + 32 hex digits
    (ids sort as the feed does)."""
    return f"{PUBLIC_ID_PREFIX}{txid:016x}{event_id:016x}"


def parse_public_id(value: str) -> tuple[int, int] | None:
    """(txid, id) of a public id, or None when it is not one."""
    match = _PUBLIC_ID.fullmatch(value)
    if match is None:
        return None
    return int(match.group(1), 16), int(match.group(2), 16)


def envelope(
    txid: int, event_id: int, type_name: str, created_at: datetime, data: Any
) -> dict[str, Any]:
    """What the feed lists and a webhook receives."""
    return {
        "id": public_id(txid, event_id),
        "type": type_name,
        "timestamp": created_at.astimezone(UTC).isoformat(),
        "data": data,
    }

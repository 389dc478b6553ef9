"""The plug between the events spine and the API's schemas.

The spine (`catalogue`, `outbox`) sits below every blueprint, so that jobs, bids, reviews
and plans write their events in their own transactions. An event's data, though, is the
resource as its recipient sees it through the API, dumped with those blueprints' own
schemas, which the spine may not import. So the dumping is plugged in from above:
`create_app` installs `jobboard.events.payloads.event_data` here, and `outbox.build_event`
calls it through `data_for`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from jobboard.events.catalogue import EventType

# (the type, the change's resources, the recipient's user id) -> the event's data.
DataBuilder = Callable[[EventType, Mapping[str, Any], int], dict[str, Any]]

_builder: DataBuilder | None = None


def install(builder: DataBuilder) -> None:
    """Make `builder` what every event's data is made by (create_app calls this)."""
    global _builder
    _builder = builder


def data_for(spec: EventType, resources: Mapping[str, Any], user_id: int) -> dict[str, Any]:
    """The data of a `spec` event about `resources`, as user `user_id` may see them."""
    if _builder is None:
        raise RuntimeError(
            "No event data builder installed: create_app installs "
            "jobboard.events.payloads.event_data."
        )
    return _builder(spec, resources, user_id)

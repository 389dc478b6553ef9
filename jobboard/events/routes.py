"""The event feed and the public catalogue of event types."""

from __future__ import annotations

from functools import partial
from typing import Any

from flask.views import MethodView

from jobboard.auth.tokens import VerifiedUserView, caller
from jobboard.events import feed
from jobboard.events.catalogue import TYPES, EventType
from jobboard.events.schemas import EventOut, EventQueryArgs, EventTypeOut
from jobboard.view_helpers import Blueprint, documented_error, verified_user_doc

blp = Blueprint(
    "events",
    __name__,
    url_prefix="/api",
    description=(
        "Events: every change you should hear of (your job completed, a bid arrived, your "
        "bid won, ...), written in the same transaction as the change. Read them here, "
        "oldest first, from a cursor; receive them as webhooks (see the webhooks tag); "
        "some also come by email. Kept EVENT_RETENTION_DAYS (30) days."
    ),
)

error = partial(documented_error, blp)


@blp.route("/events/")
class Events(VerifiedUserView):
    @verified_user_doc(blp)
    @blp.etag
    @blp.arguments(EventQueryArgs, location="query")
    @blp.response(200, EventOut(many=True))
    @error(422, "after is not an event id, an unknown type, or limit outside 1-100")
    @blp.doc(operationId="listEvents")
    def get(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        """Your events after a cursor, oldest first

        Pass the id of the last event you have as `after` to get the next ones; an empty
        list means none yet. An event appears once the transaction that wrote it has
        committed and every transaction that started before it has ended, so a cursor
        never skips one that committed late.
        """
        return feed.feed(caller(), args.get("after"), args.get("types", ()), args["limit"])


@blp.route("/events/types/")
class EventTypes(MethodView):
    @blp.etag
    @blp.response(200, EventTypeOut(many=True))
    @blp.doc(operationId="listEventTypes")
    def get(self) -> list[EventType]:
        """Every event type: who hears of it, when, where, and an example (no auth)"""
        return list(TYPES)

"""What the API blueprints share: the verified-user view, OpenAPI documentation of error
answers and authentication, and pagination done by the database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, ClassVar

from flask import g, request
from flask.views import MethodView
from flask_smorest import Blueprint, Page
from flask_smorest.error_handler import ErrorSchema
from sqlalchemy import Select, func, select

from config import Config
from jobboard.auth.tokens import verified_required
from jobboard.extensions import db
from jobboard.ratelimit import UNKNOWN_IP

NOT_VERIFIED = "Email address not verified."
MAX_OFFSET = 2**63 - 1
PAGE_SIZES: dict[str, int] = {
    "page_size": Config.PAGINATION_PAGE_SIZE,
    "max_page_size": Config.MAX_PAGE_SIZE,
}


RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    }
}


class VerifiedUserView(MethodView):
    """A view for verified users only. Authentication runs before flask-smorest parses
    the arguments: strangers get 401/403, never a 422 about a body they had no business
    sending."""

    decorators: ClassVar[list[Callable[..., Any]]] = [verified_required]


def received_at() -> datetime:
    """When the current request arrived (noted by `request_rules.register_request_rules`)."""
    return g.received_at


def client_ip() -> str:
    """The caller's IP address: the socket's peer, or with TRUSTED_PROXIES=N the N-th
    address from the right of X-Forwarded-For (ProxyFix, set up in create_app)."""
    return request.remote_addr or UNKNOWN_IP


def documented_error(
    blp: Blueprint, status_code: int, description: str, headers: dict[str, Any] | None = None
) -> Callable[[Any], Any]:
    """Document an error answer, in the flask-smorest error body."""
    return blp.alt_response(
        status_code, schema=ErrorSchema, description=description, headers=headers
    )


def verified_user_doc(blp: Blueprint, forbidden: str = NOT_VERIFIED) -> Callable[[Any], Any]:
    """OpenAPI for a view of `VerifiedUserView`: bearer auth and its 401/403 answers."""

    def document(view: Any) -> Any:
        view = documented_error(blp, 401, "Missing, invalid, expired or revoked access token.")(
            view
        )
        view = documented_error(blp, 403, forbidden)(view)
        return blp.doc(security=[{"bearerAuth": []}])(view)

    return document


class SelectPage(Page):
    """A page of a `select(...)`, for `@blp.paginate(SelectPage, **PAGE_SIZES)`: one
    LIMIT/OFFSET query whose rows carry the total (`count(*) OVER ()`, counted over the
    whole filtered set before LIMIT applies), so X-Pagination costs no second query. Only
    a page past the end (no row to carry the total) runs a COUNT of its own."""

    collection: Select[Any]

    def __init__(self, collection: Select[Any], page_params: Any) -> None:
        self.collection = collection
        self.page_params = page_params
        self._items, self.page_params.item_count = self._page_and_total()

    def _page_and_total(self) -> tuple[list[Any], int]:
        first = self.page_params.first_item
        if first > MAX_OFFSET:
            return [], self._count()  # past any table's end; PostgreSQL's OFFSET is a bigint
        page = (
            self.collection.add_columns(func.count().over().label("page_total"))
            .limit(self.page_params.page_size)
            .offset(first)
        )
        rows = db.session.execute(page).all()
        if rows:
            return [row[0] for row in rows], int(rows[0][-1])
        return [], 0 if first == 0 else self._count()

    def _count(self) -> int:
        counted = select(func.count()).select_from(self.collection.order_by(None).subquery())
        return db.session.scalar(counted) or 0

    @property
    def items(self) -> list[Any]:
        return self._items

    @property
    def item_count(self) -> int:
        return int(self.page_params.item_count)

"""What the API blueprints share: their Blueprint class, OpenAPI documentation of error
answers and authentication, and pagination done by the database. Nothing here knows a
blueprint: authentication is `jobboard.auth.tokens`'."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from functools import wraps
from typing import Any

from flask import current_app, g
from flask_smorest import Page
from flask_smorest.error_handler import ErrorSchema
from sqlalchemy import Select, func, select

from jobboard import request_rules
from jobboard.extensions import db

NOT_VERIFIED = "Email address not verified."
MAX_OFFSET = 2**63 - 1
# Marks a pagination whose page sizes come from the app's configuration.
_CONFIGURED_SIZES = "jobboard_configured_sizes"


RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "schema": {"type": "integer"},
    }
}


def page_sizes(config: Mapping[str, Any]) -> tuple[int, int]:
    """A list's default and largest page size: PAGINATION_PAGE_SIZE and MAX_PAGE_SIZE."""
    return int(config["PAGINATION_PAGE_SIZE"]), int(config["MAX_PAGE_SIZE"])


class Blueprint(request_rules.Blueprint):
    """Every API blueprint: arguments read through `request_rules.SafeParser`, and
    `paginate` taking its default and largest page size from the application's
    configuration, read when a request comes and when the OpenAPI document is written
    (never when a module is imported), so the sizes in force are the ones configured and
    the ones documented."""

    def paginate(
        self,
        pager: type[Page] | None = None,
        *,
        page: int | None = None,
        page_size: int | None = None,
        max_page_size: int | None = None,
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        if page_size is not None or max_page_size is not None:
            return super().paginate(
                pager, page=page, page_size=page_size, max_page_size=max_page_size
            )
        paginate_with_sizes = super().paginate

        def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
            by_sizes: dict[tuple[int, int], Callable[..., Any]] = {}

            def paginated(sizes: tuple[int, int]) -> Callable[..., Any]:
                if sizes not in by_sizes:
                    by_sizes[sizes] = paginate_with_sizes(
                        pager, page=page, page_size=sizes[0], max_page_size=sizes[1]
                    )(view)
                return by_sizes[sizes]

            @wraps(view)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                return paginated(page_sizes(current_app.config))(*args, **kwargs)

            # The document is written for each app by `_prepare_pagination_doc` below.
            documented = paginate_with_sizes(pager, page=page)(view)
            wrapper._apidoc = documented._apidoc  # type: ignore[attr-defined]
            wrapper._apidoc["pagination"][_CONFIGURED_SIZES] = paginated  # type: ignore[attr-defined]
            return wrapper

        return decorator

    def _prepare_pagination_doc(
        self, doc: dict[str, Any], doc_info: dict[str, Any], *, app: Any, **kwargs: Any
    ) -> dict[str, Any]:
        pagination = doc_info.get("pagination") or {}
        paginated = pagination.get(_CONFIGURED_SIZES)
        if paginated is not None:
            configured = paginated(page_sizes(app.config))._apidoc["pagination"]
            doc_info = {**doc_info, "pagination": configured}
        return super()._prepare_pagination_doc(doc, doc_info, app=app, **kwargs)


def received_at() -> datetime:
    """When the current request arrived (noted by `request_rules.register_request_rules`)."""
    return g.received_at


def documented_error(
    blp: Blueprint, status_code: int, description: str, headers: dict[str, Any] | None = None
) -> Callable[[Any], Any]:
    """Document an error answer, in the flask-smorest error body."""
    return blp.alt_response(
        status_code, schema=ErrorSchema, description=description, headers=headers
    )


def verified_user_doc(blp: Blueprint, forbidden: str = NOT_VERIFIED) -> Callable[[Any], Any]:
    """OpenAPI for a view of `auth.tokens.VerifiedUserView`: bearer auth and its 401/403
    answers."""

    def document(view: Any) -> Any:
        view = documented_error(blp, 401, "Missing, invalid, expired or revoked access token.")(
            view
        )
        view = documented_error(blp, 403, forbidden)(view)
        return blp.doc(security=[{"bearerAuth": []}])(view)

    return document


class SelectPage(Page):
    """A page of a `select(...)`, for `@blp.paginate(SelectPage)`: one
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
            return [self._item(row) for row in rows], int(rows[0][-1])
        return [], 0 if first == 0 else self._count()

    def _item(self, row: Any) -> Any:
        """A row's entity, or for a select of several columns its columns by name."""
        if len(self.collection.column_descriptions) == 1:
            return row[0]
        return {key: value for key, value in row._mapping.items() if key != "page_total"}

    def _count(self) -> int:
        counted = select(func.count()).select_from(self.collection.order_by(None).subquery())
        return db.session.scalar(counted) or 0

    @property
    def items(self) -> list[Any]:
        return self._items

    @property
    def item_count(self) -> int:
        return int(self.page_params.item_count)


class CappedCountPage(SelectPage):
    """A page of a list over every user's rows (the operations console's), which may
    match a million: the page is a plain LIMIT/OFFSET query (no count over every match
    before the limit), and the total is counted exactly up to COUNT_CAP matches, from an
    index range; past it the total says COUNT_CAP + 1, "more than COUNT_CAP"."""

    COUNT_CAP = 100_000

    def _page_and_total(self) -> tuple[list[Any], int]:
        first = self.page_params.first_item
        if first > MAX_OFFSET:
            return [], self._count()
        page = self.collection.limit(self.page_params.page_size).offset(first)
        rows = db.session.execute(page).all()
        return [self._item(row) for row in rows], self._count()

    def _count(self) -> int:
        capped = self.collection.order_by(None).limit(self.COUNT_CAP + 1).subquery()
        return db.session.scalar(select(func.count()).select_from(capped)) or 0

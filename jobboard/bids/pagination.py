"""flask-smorest post-pagination of a SQLAlchemy select, done by the database."""

from __future__ import annotations

from typing import Any

from flask_smorest import Page
from sqlalchemy import Select, func, select

from jobboard.extensions import db


class SelectPage(Page):
    """A page of a `select(...)`: one COUNT and one LIMIT/OFFSET query, never the whole
    result set in memory."""

    collection: Select[Any]

    @property
    def items(self) -> list[Any]:
        page = self.collection.limit(self.page_params.page_size).offset(self.page_params.first_item)
        return list(db.session.scalars(page))

    @property
    def item_count(self) -> int:
        counted = select(func.count()).select_from(self.collection.order_by(None).subquery())
        return db.session.scalar(counted) or 0

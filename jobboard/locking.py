"""Row locks, one way: `locked(Model, id)` reads a row FOR UPDATE (or FOR SHARE), and
`for_update(statement)` locks the rows of any other SELECT the same way, with the
variants the callers need (FOR NO KEY UPDATE of one table, SKIP LOCKED). Every row lock
of the application is taken here.

Every locked read refreshes the objects it returns (`populate_existing`): the point of the
lock is to decide on the row as it is now, and without it the session would hand back
the copy it loaded earlier in the transaction (before another transaction's commit that
this lock waited for), so a status check would pass on a stale value.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, select

from jobboard.extensions import db

Row = TypeVar("Row")


def for_update(
    statement: Select[Any],
    *,
    shared: bool = False,
    no_key: bool = False,
    of: Any = None,
    skip_locked: bool = False,
) -> Select[Any]:
    """`statement` locking the rows it reads FOR UPDATE and refreshing the objects it
    returns (see the module's docstring). `shared`: FOR SHARE. `no_key`: FOR NO KEY
    UPDATE, which lets through the KEY SHARE lock of a row inserted that references the
    locked one. `of`: lock only that table's rows of a join. `skip_locked`: pass over rows
    another transaction holds instead of waiting for them."""
    return statement.with_for_update(
        read=shared, key_share=no_key, of=of, skip_locked=skip_locked
    ).execution_options(populate_existing=True)


def locked(
    model: type[Row], row_id: int, *criteria: ColumnElement[bool], shared: bool = False
) -> Row | None:
    """The `model` row with primary key `row_id` (and matching `criteria`), locked until
    the transaction ends; None when there is no such row."""
    key = model.id  # type: ignore[attr-defined]
    return db.session.scalar(
        for_update(select(model).where(key == row_id, *criteria), shared=shared)
    )


def locked_rows(model: type[Row], *criteria: ColumnElement[bool]) -> list[Row]:
    """Every `model` row matching `criteria`, locked FOR UPDATE."""
    return list(db.session.scalars(for_update(select(model).where(*criteria))))

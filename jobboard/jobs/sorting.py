"""How jobs sort: one table of sort keys, which the query args' schema and the service
share (as `jobboard.bids.sorting` for bids)."""

from __future__ import annotations

from sqlalchemy import Select, func

from jobboard.models import Job

SORT_COLUMNS = {
    "created_at": Job.created_at,
    "scheduled_time": Job.scheduled_time,
    "status": Job.status,
    # Case-insensitive, whatever the database's collation: "alpha" before "Bravo".
    "name": func.lower(Job.name),
}
SORT_KEYS = [*SORT_COLUMNS, *(f"-{key}" for key in SORT_COLUMNS)]
DEFAULT_SORT = "-created_at"


def sorted_by(query: Select[tuple[Job]], sort: str | None) -> Select[tuple[Job]]:
    """`query` ordered by the sort key `sort` (`-` prefix: descending; default
    `DEFAULT_SORT`), then by id, a stable order for paging."""
    sort = sort or DEFAULT_SORT
    column = SORT_COLUMNS[sort.lstrip("-")]
    if sort.startswith("-"):
        return query.order_by(column.desc(), Job.id.desc())
    return query.order_by(column.asc(), Job.id.asc())

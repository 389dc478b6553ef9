"""How bids sort: one table of sort keys, which the query args' schema and the service
share (as `jobboard.jobs.sorting` for jobs)."""

from __future__ import annotations

from sqlalchemy import Select

from jobboard.models import Bid

SORT_COLUMNS = {
    "fee": Bid.fee,
    "proposed_deadline": Bid.proposed_deadline,
    "created_at": Bid.created_at,
}
SORT_KEYS = [*SORT_COLUMNS, *(f"-{key}" for key in SORT_COLUMNS)]
DEFAULT_SORT = "-created_at"


def sorted_by(query: Select[tuple[Bid]], sort: str) -> Select[tuple[Bid]]:
    """`query` ordered by the sort key `sort` (`-` prefix: descending), then by id."""
    key = sort.removeprefix("-")
    descending = sort.startswith("-")
    column = SORT_COLUMNS[key]
    order = [column.desc() if descending else column.asc()]
    if key == "fee":
        # Amounts in different currencies are not comparable; keep each currency together.
        order.insert(0, Bid.currency.asc())
    order.append(Bid.id.desc() if descending else Bid.id.asc())  # a stable order for paging
    return query.order_by(*order)

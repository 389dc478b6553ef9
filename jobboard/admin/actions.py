"""The bulk actions an operator can take and their limit (the schemas and the service
both name them)."""

from __future__ import annotations

import enum

# At most this many ids in one bulk action; a larger set is named by a filter.
MAX_BULK_IDS = 10_000


class BulkAction(enum.StrEnum):
    RETRY = "retry"
    CANCEL = "cancel"
    RUN_NOW = "run_now"

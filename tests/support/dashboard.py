"""Expected numbers of the dashboard tests."""

from __future__ import annotations

from jobboard.models import BidStatus, JobStatus


def zero_jobs() -> dict[str, int]:
    return {**{status.value: 0 for status in JobStatus}, "total": 0}


def zero_bids() -> dict[str, int]:
    return {status.value: 0 for status in BidStatus}

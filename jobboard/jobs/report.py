"""The built-in `report` kind: it reads the owner's jobs and queues an email, so it lives on
the application's side. The registry (`workers.processors`) finds it like any plugin,
through the `jobboard.processors` entry point that pyproject.toml declares."""

from __future__ import annotations

from typing import Any

from jobboard.extensions import db
from jobboard.jobs.service import job_counts_by_status
from jobboard.mailer import queue_email
from jobboard.models import User
from workers.processors import JobRun, NoParams, processor


@processor("report", schema=NoParams, time_limit=10)
def report(params: dict[str, Any], run: JobRun) -> dict[str, Any]:
    """Emails the owner a summary of their jobs by status."""
    # The email is deferred on the worker's transaction, which commits together with the
    # job's result: a failed attempt sends nothing.
    owner = db.session.get(User, run.owner_id)
    if owner is None:
        raise LookupError(f"owner {run.owner_id} no longer exists")
    counts = job_counts_by_status(owner.id)
    lines = [f"  {status:<12} {count}" for status, count in counts.items()]
    body = "\n".join(
        [
            "Hello,",
            "",
            "here is the summary of your jobs on jobboard by status:",
            "",
            *lines,
            f"  {'total':<12} {sum(counts.values())}",
            "",
            f"(report job #{run.job_id})",
        ]
    )
    queue_email(owner.email, "Your jobboard jobs report", body)
    return {"emailed": owner.email, "counts": counts}

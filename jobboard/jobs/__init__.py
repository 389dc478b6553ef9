"""Jobs: posting, listing, cancelling and retrying jobs, and reading their results."""

# The `report` kind registers itself in the processor registry: imported with the package,
# so the web side (which validates params) and the worker (which runs it) both know it.
from jobboard.jobs import report as _report  # noqa: F401

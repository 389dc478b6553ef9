"""`flask jobs ...`"""

from __future__ import annotations

from flask.cli import AppGroup

jobs_cli = AppGroup("jobs", help="Inspect and operate jobs.")

"""The scenarios of `python -m bench`, in the order they run.

Each is a module here with a `Scenario` subclass (`bench.harness`): the `--scenarios`
numbers that select it, its options, its headline keys in the JSON summary, and
`run(harness)`, which measures and adds its rows to `harness.report`. A new scenario is a
new module and one line below.
"""

from __future__ import annotations

from bench.harness import Scenario
from bench.scenarios.api import Api
from bench.scenarios.backlog import Backlog
from bench.scenarios.batch_create import BatchCreate
from bench.scenarios.http_under_load import HttpUnderLoad
from bench.scenarios.operations import Operations
from bench.scenarios.register import Register
from bench.scenarios.throughput import Throughput
from bench.scenarios.timeliness import TimelinessIdle
from bench.scenarios.webhooks import Webhooks

SCENARIOS: tuple[Scenario, ...] = (
    Throughput(),
    Backlog(),
    TimelinessIdle(),
    HttpUnderLoad(),  # reads scenario 1's raw rate from the summary when it ran first
    Api(),
    Register(),
    BatchCreate(),
    Operations(),
    Webhooks(),
)

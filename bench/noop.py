"""The queue engine on its own: a Procrastinate App with one no-op task.

Scenario 1 batch-defers N jobs of this task and drains them with `python -m bench.noop`,
a worker with exactly the settings of the Procfile's worker (`workers.__main__`): same
concurrency, polling interval, heartbeat, LISTEN/NOTIFY and log level. The task is a
coroutine, as jobboard's `echo` is: Procrastinate runs it on the worker's event loop, with
no thread hand-off, its fastest path.
"""

from __future__ import annotations

import logging
import os

from procrastinate import App, PsycopgConnector

from config import libpq_url

NOOP_QUEUE = "bench_noop"
NOOP_TASK = "bench_noop"


# The worker subprocess gets DATABASE_URL from the bench; the bench process itself
# defers through `defer_noops` on a connector of its own.
noop_app = App(
    connector=PsycopgConnector(conninfo=libpq_url(os.environ.get("DATABASE_URL", ""))),
    import_paths=[__name__],
)


@noop_app.task(name=NOOP_TASK, queue=NOOP_QUEUE)
async def noop() -> None:
    """Does nothing: what a job costs here is the engine's own bookkeeping."""


async def defer_noops(conninfo: str, count: int) -> list[int]:
    """Defer `count` no-op jobs in one batch (one INSERT) on the database at `conninfo`;
    returns their ids."""
    with noop_app.replace_connector(PsycopgConnector(conninfo=libpq_url(conninfo))) as app:
        async with app.open_async():
            return await noop.batch_defer_async(*({} for _ in range(count)))


def main() -> None:
    # The same logging as `python -m workers`: Procrastinate logs every job at INFO.
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    from workers.__main__ import worker_options

    options = worker_options()
    logging.getLogger(__name__).info("starting the no-op worker: %s", options)
    noop_app.run_worker(queues=[NOOP_QUEUE], **options)


if __name__ == "__main__":
    main()

"""The batched worker of the `jobs` queue: many entries taken in one statement, many
finished in one statement (docs/performance.md).

Procrastinate's worker takes a slot, fetches one entry, starts it, and finishes it: four
statements a job, each its own transaction with its own WAL flush. This worker drives the
same attempt (`workers.jobs.drive_attempt`: the transitions of jobboard.jobs.transitions)
in batches, through `BatchedJobManager`, a `procrastinate.manager.JobManager` with two
more calls:

- `fetch_and_start(worker_id, n, b)`: up to n due entries for the n free slots, at most b
  of them of blocking kinds for the b free slots of those, taken by the fair fetch in SQL
  (every rule of the single fetch, applied to each entry), with their jobs started in the
  same statement. Never more than the free slots: a job never waits in this worker's
  memory while another worker has a free slot.
- `complete_and_finish(...)`: the outputs of many finished attempts (job status and
  result) and the finish of their queue entries, in one statement. `BatchCompleter`
  collects them and flushes every QUEUE_FLUSH_SECONDS, at once when FLUSH_AT_WAITING are
  waiting, and at once when the worker has nothing else to do.

A slot is held from the fetch to the end of the processor. The worker has
`async_concurrency` slots (WORKER_ASYNC_CONCURRENCY), of which blocking kinds take at most
`concurrency` (WORKER_CONCURRENCY): a blocking kind runs in a thread of its own and holds
its slot as long as it runs; a non-blocking kind (echo) runs on the event loop and gives
its slot back as soon as its processor returns, so a batch of them is taken, run and
handed to the completer in one turn, and hundreds of their attempts can wait for the
completer's flush while the slots take more. Which kind is which the fetch reads from the
entry's `async` mark (`jobboard.jobs.service.entry_marks`).

Registration, heartbeats and the notifications of new entries are Procrastinate's
(`register_worker`, `update_heartbeat`, `listen_for_jobs`): the stalled-job check sees
this worker like any other. If this process dies, its `doing` entries are given back to
the queue once its heartbeat is STALLED_WORKER_SECONDS old; an attempt that had finished
but was not flushed yet runs again then (its job is still `in_progress`, so the re-run
counts the lost attempt as failed and makes the next one).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from procrastinate.manager import JobManager

from jobboard import logs
from jobboard.jobs.transitions import (
    Attempt,
    Completion,
    TakenEntry,
    complete_batch_async,
    start_batch_async,
)
from jobboard.models import now_utc
from workers.app import PROCESS_JOB_TASK, QUEUE_JOBS
from workers.jobs import drive_attempt

logger = logging.getLogger(__name__)

# The completer flushes at once when this many attempts wait (River's BatchCompleter: 100).
FLUSH_AT_WAITING = 100
# An entry whose attempt failed outside the processor (the database went away) is
# retried this much later, as Procrastinate's worker would (InfrastructureRetry).
RETRY_SECONDS = 0.5


class BatchedJobManager(JobManager):
    """Procrastinate's JobManager, with the batched fetch and finish of the jobs queue."""

    async def fetch_and_start(
        self, worker_id: int, limit: int, blocking_limit: int
    ) -> list[TakenEntry]:
        async with self.connector.pool.connection() as connection:
            return await start_batch_async(connection, worker_id, limit, blocking_limit)

    async def complete_and_finish(
        self, worker_id: int, completions: list[Completion], entry_ids: list[int]
    ) -> set[int]:
        async with self.connector.pool.connection() as connection:
            return await complete_batch_async(connection, worker_id, completions, entry_ids)


@dataclass
class _Waiting:
    entry_id: int
    completion: Completion | None
    done: asyncio.Future[bool] = field(repr=False)


class BatchCompleter:
    """Collects finished attempts and flushes them in one statement: every
    `flush_seconds`, at once at FLUSH_AT_WAITING, or at once when `idle()` says nothing
    else will come soon. A failed flush fails its waiters and stops the worker (the
    supervisor starts a new one; the entries come back through the stalled-job check)."""

    def __init__(
        self,
        manager: BatchedJobManager,
        worker_id: int,
        flush_seconds: float,
        idle: Callable[[], bool],
    ) -> None:
        self.manager = manager
        self.worker_id = worker_id
        self.flush_seconds = flush_seconds
        self.idle = idle
        self._waiting: list[_Waiting] = []
        self._wake = asyncio.Event()
        self._now = asyncio.Event()

    def add(self, entry_id: int, completion: Completion | None = None) -> asyncio.Future[bool]:
        """Finish queue entry `entry_id`, and complete `completion` with it; the future
        says whether the attempt still owned its job."""
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append(_Waiting(entry_id, completion, done))
        self._wake.set()
        if len(self._waiting) >= FLUSH_AT_WAITING or self.idle():
            self._now.set()
        return done

    def poke(self) -> None:
        """Flush now if anything waits and the worker is idle."""
        if self._waiting and self.idle():
            self._now.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._now.wait(), self.flush_seconds)
            await self.flush()

    async def flush(self) -> None:
        self._wake.clear()
        self._now.clear()
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return
        completions = [item.completion for item in waiting if item.completion is not None]
        try:
            completed = await self.manager.complete_and_finish(
                self.worker_id, completions, [item.entry_id for item in waiting]
            )
        except BaseException as error:
            for item in waiting:
                if not item.done.done():
                    item.done.set_exception(RuntimeError(f"flush failed: {error!r}"))
                    item.done.exception()  # retrieved: nobody may be waiting on it
            raise
        for item in waiting:
            if not item.done.done():
                item.done.set_result(
                    item.completion is not None and item.completion.job_id in completed
                )


class BatchedJobsWorker:
    """The `jobs` queue's worker: `async_concurrency` slots, at most `concurrency` of them
    for blocking kinds, filled `batch_size` at a time."""

    def __init__(
        self,
        app: Any,
        *,
        concurrency: int,
        async_concurrency: int,
        batch_size: int,
        flush_seconds: float,
        polling_interval: float,
        heartbeat_interval: float,
        stalled_worker_timeout: float,
        shutdown_timeout: float = 30.0,
    ) -> None:
        self.app = app
        self.concurrency = concurrency
        self.async_concurrency = async_concurrency
        self.batch_size = batch_size
        self.flush_seconds = flush_seconds
        self.polling_interval = polling_interval
        self.heartbeat_interval = heartbeat_interval
        self.stalled_worker_timeout = stalled_worker_timeout
        self.shutdown_timeout = shutdown_timeout
        self.worker_id: int | None = None
        self._running: set[asyncio.Task[Any]] = set()
        self._holding = 0  # slots held: fetched, processor not ended
        self._holding_blocking = 0  # of those, by blocking kinds
        self._backlogged = False  # the last fetch filled every slot it asked for
        self._new_entry = asyncio.Event()
        self._slot_freed = asyncio.Event()

    def _idle(self) -> bool:
        return self._holding == 0 and not self._backlogged

    async def run(self) -> None:
        """Until cancelled (then gracefully: running attempts end and are flushed) or a
        database error (raised: `workers.__main__.supervise` starts a new loop)."""
        manager = BatchedJobManager(self.app.connector)
        await manager.prune_stalled_workers(self.stalled_worker_timeout)
        self.worker_id = await manager.register_worker()
        completer = BatchCompleter(manager, self.worker_id, self.flush_seconds, self._idle)
        side = [
            asyncio.create_task(self._heartbeat(manager), name="heartbeat"),
            asyncio.create_task(completer.run(), name="completer"),
            asyncio.create_task(
                manager.listen_for_jobs(on_notification=self._notified, queues=[QUEUE_JOBS]),
                name="listener",
            ),
        ]
        logger.info(
            "batched worker %s on queue %s: %d slots (%d for blocking kinds), batches of %d, "
            "flush every %g s",
            self.worker_id,
            QUEUE_JOBS,
            self.async_concurrency,
            self.concurrency,
            self.batch_size,
            self.flush_seconds,
        )
        loop = asyncio.create_task(self._fetch_loop(manager, completer, side), name="fetch")
        try:
            await asyncio.shield(loop)
        except asyncio.CancelledError:
            loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await loop
            await self._shutdown(manager, completer, side)
            raise
        except BaseException:
            for task in (*side, *self._running):
                task.cancel()
            raise

    async def _fetch_loop(
        self, manager: BatchedJobManager, completer: BatchCompleter, side: list[asyncio.Task]
    ) -> None:
        assert self.worker_id is not None
        while True:
            for task in side:
                if task.done():  # the listener or the completer ended: a database error
                    error = task.exception() if not task.cancelled() else None
                    raise RuntimeError(f"{task.get_name()} ended: {error!r}")
            free = self.async_concurrency - self._holding
            if free > 0:
                self._new_entry.clear()
                asked = min(free, self.batch_size)
                blocking_free = min(asked, self.concurrency - self._holding_blocking)
                taken = await manager.fetch_and_start(self.worker_id, asked, blocking_free)
                self._backlogged = len(taken) == asked
                for entry in taken:
                    self._start(entry, completer)
                if self._backlogged:
                    await asyncio.sleep(0)  # let the attempts just started run
                    continue
                completer.poke()
            self._slot_freed.clear()
            waits = [asyncio.create_task(self._slot_freed.wait())]
            if free > 0:
                waits.append(asyncio.create_task(self._new_entry.wait()))
            try:
                await asyncio.wait(
                    waits, timeout=self.polling_interval, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                for waiter in waits:
                    waiter.cancel()

    def _start(self, entry: TakenEntry, completer: BatchCompleter) -> None:
        self._holding += 1
        self._holding_blocking += entry.blocking
        task = asyncio.create_task(self._attempt(entry, completer), name=f"entry-{entry.entry_id}")
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    def _release(self, entry: TakenEntry, held: list[bool]) -> None:
        if held[0]:
            held[0] = False
            self._holding -= 1
            self._holding_blocking -= entry.blocking
            self._slot_freed.set()

    async def _attempt(self, entry: TakenEntry, completer: BatchCompleter) -> None:
        held = [True]
        try:
            if entry.task_name != PROCESS_JOB_TASK or entry.job_id is None:
                logger.error("entry %s (%s) is not a job's attempt", entry.entry_id, entry)
                self._release(entry, held)
                await completer.add(entry.entry_id)
                return

            async def complete_later(attempt: Attempt, output: object, duration_ms: int) -> bool:
                self._release(entry, held)  # the processor has ended: its slot takes the next entry
                completion = Completion(entry.job_id, attempt.attempt, output, duration_ms)
                return await completer.add(entry.entry_id, completion)

            with logs.job_context(entry.job_id, request_id=entry.request_id):
                outcome = await drive_attempt(
                    entry.job_id, entry.entry_id, entry.attempt, lambda: False, complete_later
                )
            if held[0]:  # not through the completer: the entry alone is finished
                self._release(entry, held)
                await completer.add(entry.entry_id)
            logger.debug("job %s entry %s: %s", entry.job_id, entry.entry_id, outcome)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The infrastructure failed around the attempt (the database went away): the
            # entry is retried as Procrastinate's worker would (InfrastructureRetry); if
            # that fails too, the worker stops and the stalled-job check takes the entry.
            logger.exception("job %s entry %s: attempt failed", entry.job_id, entry.entry_id)
            await self._retry(entry)
        finally:
            self._release(entry, held)

    async def _retry(self, entry: TakenEntry) -> None:
        manager = BatchedJobManager(self.app.connector)
        with contextlib.suppress(Exception):
            await manager.retry_job_by_id_async(
                entry.entry_id, retry_at=now_utc() + timedelta(seconds=RETRY_SECONDS)
            )

    async def _notified(self, *, channel: str, notification: Any) -> None:
        if notification.get("type") == "job_inserted":
            self._new_entry.set()

    async def _heartbeat(self, manager: BatchedJobManager) -> None:
        assert self.worker_id is not None
        while True:
            await asyncio.sleep(self.heartbeat_interval)
            await manager.update_heartbeat(self.worker_id)

    async def _shutdown(
        self, manager: BatchedJobManager, completer: BatchCompleter, side: list[asyncio.Task]
    ) -> None:
        if self._running:
            await asyncio.wait(set(self._running), timeout=self.shutdown_timeout)
        for task in self._running:
            task.cancel()
        side[1].cancel()  # the completer's loop; its last flush is ours
        for task in side:
            task.cancel()
        await asyncio.gather(*side, return_exceptions=True)
        with contextlib.suppress(Exception):
            await completer.flush()
        assert self.worker_id is not None
        with contextlib.suppress(Exception):
            await manager.unregister_worker(self.worker_id)
        logger.info("batched worker %s stopped", self.worker_id)

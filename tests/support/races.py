"""Races forced deterministically: a separate connection holds a lock, the requests pile
up behind it in threads, then the lock is released and the database decides."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from config import libpq_url
from tests.support.database import lock_waiters
from tests.support.polling import wait_until


@contextmanager
def blocking_transaction(database_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(libpq_url(database_url)) as connection:
        yield connection


def in_threads(*calls: Callable[[], Any]) -> tuple[list[Any], list[threading.Thread]]:
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        results[index] = call()

    threads = [threading.Thread(target=run, args=item) for item in enumerate(calls)]
    for thread in threads:
        thread.start()
    return results, threads


def join(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.join(timeout=20)
        assert not thread.is_alive()


def behind_a_row_lock(
    live_app: Flask,
    database_url: str,
    lock: str,
    row_id: int,
    calls: list[Callable[[FlaskClient], TestResponse]],
    queued: Callable[[], Any] | None = None,
) -> list[TestResponse]:
    """Run each call in its own thread with its own test client (its own app context,
    session and database connection) and return their responses.

    A barrier lines the threads up, and the row is held locked (`lock`, a SELECT ... FOR
    UPDATE with one parameter) from another connection until every call is queued behind
    that lock: so the calls provably run their transactions at the same time, rather than
    possibly one after the other. `queued` is called then, before the lock is let go."""
    barrier = threading.Barrier(len(calls) + 1)
    outcomes: list[TestResponse | BaseException | None] = [None] * len(calls)

    def run(index: int, call: Callable[[FlaskClient], TestResponse]) -> None:
        try:
            client = live_app.test_client()
            barrier.wait(timeout=10)
            outcomes[index] = call(client)
        except BaseException as error:
            outcomes[index] = error

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in enumerate(calls)]
    with psycopg.connect(libpq_url(database_url)) as lock_holder:
        lock_holder.execute(lock, (row_id,))
        for thread in threads:
            thread.start()
        barrier.wait(timeout=10)
        wait_until(lambda: lock_waiters(database_url) >= len(calls), timeout=20)
        if queued is not None:
            queued()
        lock_holder.rollback()
    for thread in threads:
        thread.join(timeout=30)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    return outcomes  # type: ignore[return-value]

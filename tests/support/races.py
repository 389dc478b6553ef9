"""Races forced deterministically: a separate connection holds a lock, the requests pile
up behind it in threads, then the lock is released and the database decides."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from config import libpq_url


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

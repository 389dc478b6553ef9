"""A small HTTP load generator: a thread per simulated client, each with its own
keep-alive connection (http.client reconnects when the server closes it, as gunicorn's
sync workers do after every response)."""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bench.report import percentile

# (method, path, JSON body or None, extra headers) for request number i
RequestFactory = Callable[[int], tuple[str, str, Any, dict[str, str]]]


@dataclass
class LoadResult:
    requests: int
    concurrency: int
    seconds: float
    latencies: list[float] = field(repr=False)
    statuses: Counter
    failures: list[str] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else float("nan")

    @property
    def p50(self) -> float:
        return percentile(self.latencies, 0.50)

    @property
    def p99(self) -> float:
        return percentile(self.latencies, 0.99)

    def unexpected(self, expected: int) -> int:
        return sum(count for status, count in self.statuses.items() if status != expected)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "concurrency": self.concurrency,
            "seconds": self.seconds,
            "per_second": self.per_second,
            "p50": self.p50,
            "p99": self.p99,
            "max": max(self.latencies, default=float("nan")),
            "statuses": {str(status): count for status, count in self.statuses.items()},
            "failures": self.failures[:5],
        }


class Client:
    """One simulated client on one connection."""

    def __init__(self, port: int, timeout: float = 60.0) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)

    def send(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        payload = None if body is None else json.dumps(body).encode()
        all_headers = {"Accept": "application/json", **(headers or {})}
        if payload is not None:
            all_headers["Content-Type"] = "application/json"
        try:
            self.connection.request(method, path, body=payload, headers=all_headers)
            response = self.connection.getresponse()
            return response.status, response.read()
        except (http.client.HTTPException, OSError):
            self.connection.close()  # the next request opens a new connection
            raise

    def json(self, method: str, path: str, body: Any = None, **headers: str) -> Any:
        status, data = self.send(method, path, body, headers)
        if status >= 400:
            raise RuntimeError(f"{method} {path} answered {status}: {data[:300]!r}")
        return json.loads(data) if data else None

    def close(self) -> None:
        self.connection.close()


def run_load(port: int, make_request: RequestFactory, total: int, concurrency: int) -> LoadResult:
    """Send `total` requests from `concurrency` clients at once, as fast as answers come."""
    counter = itertools.count()
    lock = threading.Lock()
    latencies: list[float] = []
    statuses: Counter = Counter()
    failures: list[str] = []

    def client_loop() -> None:
        client = Client(port)
        try:
            while True:
                with lock:
                    index = next(counter)
                if index >= total:
                    return
                method, path, body, headers = make_request(index)
                started = time.perf_counter()
                try:
                    status, data = client.send(method, path, body, headers)
                except (http.client.HTTPException, OSError) as exc:
                    status, data = 0, repr(exc).encode()
                elapsed = time.perf_counter() - started
                with lock:
                    latencies.append(elapsed)
                    statuses[status] += 1
                    if status >= 400 or status == 0:
                        failures.append(f"{status}: {data[:200]!r}")
        finally:
            client.close()

    threads = [threading.Thread(target=client_loop, daemon=True) for _ in range(concurrency)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    return LoadResult(
        requests=len(latencies),
        concurrency=concurrency,
        seconds=seconds,
        latencies=latencies,
        statuses=statuses,
        failures=failures,
    )

"""A longer fuzz run: `python -m tests.fuzz --requests 10000`.

Runs tests/test_fuzz.py (schemathesis, every operation, every check) in rounds with a
fresh random seed each, until at least --requests requests were sent, then prints the
requests sent, the answers by status, the requests per operation and every failure.
Exits non-zero when a check failed or a server error was seen. Uses the test
database server (TEST_DATABASE_URL, else the embedded PostgreSQL), like the suite.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import Any

import pytest

OPERATIONS_GUESS = 25


class FuzzStatsPlaceholder:
    requests = 0


class FailureCollector:
    """A pytest plugin keeping the reports of failed tests."""

    def __init__(self) -> None:
        self.failures: list[str] = []

    @property
    def stats(self) -> Any:
        """tests/test_fuzz.py's counters (imported by pytest, not before it)."""
        module = sys.modules.get("tests.test_fuzz")
        return module.STATS if module else FuzzStatsPlaceholder()

    def pytest_runtest_logreport(self, report: Any) -> None:
        if report.failed:
            self.failures.append(f"{report.nodeid}\n{report.longreprtext[-3000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__)
    parser.add_argument("--requests", type=int, default=10_000, help="requests to send, at least")
    parser.add_argument("--max-rounds", type=int, default=50)
    args = parser.parse_args(argv)

    per_operation = max(10, math.ceil(args.requests / OPERATIONS_GUESS))
    os.environ["FUZZ_MAX_EXAMPLES"] = str(per_operation)
    os.environ["FUZZ_RANDOM"] = "1"
    collector = FailureCollector()
    started = time.monotonic()
    rounds = 0
    while collector.stats.requests < args.requests and rounds < args.max_rounds:
        rounds += 1
        pytest.main(
            [
                "-q",
                "-p",
                "no:cacheprovider",
                # From round 2 on, the test modules are imported already.
                "-W",
                "ignore::pytest.PytestAssertRewriteWarning",
                "tests/test_fuzz.py",
            ],
            plugins=[collector],
        )
        print(f"[fuzz] round {rounds}: {collector.stats.requests} requests so far", flush=True)
    STATS = collector.stats

    elapsed = time.monotonic() - started
    server_errors = sum(count for status, count in STATS.statuses.items() if status >= 500)
    print("\n=== fuzz run ===")
    print(
        f"rounds: {rounds}, seconds: {elapsed:.0f}, examples per operation and round: "
        f"{per_operation}"
    )
    print(f"requests sent: {STATS.requests}")
    print(
        "answers by status: "
        + ", ".join(f"{status}: {count}" for status, count in sorted(STATS.statuses.items()))
    )
    print(f"server errors (5xx): {server_errors}")
    print("answers by operation (documented methods; other methods answer 405):")
    for label, count in sorted(STATS.by_operation.items()):
        if count > 1:
            outcomes = sorted((s, n) for (op, s), n in STATS.by_outcome.items() if op == label)
            detail = ", ".join(f"{status}: {n}" for status, n in outcomes)
            print(f"  {count:6}  {label}  ({detail})")
    print(f"failed checks: {len(collector.failures)}")
    for failure in collector.failures:
        print("-" * 60)
        print(failure)
    return 1 if collector.failures or server_errors else 0


if __name__ == "__main__":
    sys.exit(main())

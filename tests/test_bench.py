"""Smoke test of the benchmark harness (`python -m bench`): it runs, drains, reports and
cleans up. No timing is asserted; the figures themselves are for the benchmark to show."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import psycopg

from config import PROJECT_ROOT


def test_bench_runs_the_queue_engine_scenario_end_to_end(database_server, tmp_path):
    name = f"jbtest_{os.getpid()}_bench"
    results = tmp_path / "bench.json"
    env = {**os.environ, "DATABASE_URL": database_server.admin_url}

    finished = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--scenarios",
            "1",
            "--jobs",
            "20",
            "--database",
            name,
            "--json",
            str(results),
        ],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert finished.returncode == 0, finished.stderr[-3000:]
    assert "1 queue engine, no-op" in finished.stdout
    figures = json.loads(results.read_text())
    assert figures["details"]["1_queue_engine"][0]["succeeded"] == 20
    assert figures["environment"]["cpu_count"] >= 1
    metrics = {row["metric"] for row in figures["results"]}
    assert "jobs/s (20 jobs)" in metrics
    with psycopg.connect(database_server.admin_url, autocommit=True) as conn:
        left = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    assert left is None, "the benchmark database is dropped afterwards"

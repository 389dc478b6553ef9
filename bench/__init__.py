"""`python -m bench`: jobboard's benchmark (docs/performance.md).

It brings up what it measures — a dedicated database, the web app under gunicorn and the
worker exactly as the Procfile runs them, and an SMTP sink it can slow down — runs each
scenario with bounded counts on loopback only, prints one table and writes the same
figures as JSON. Every target is a ratio measured side by side in the same run, or a
latency percentile, because absolute figures on a shared machine drift between runs.

Layout, top to bottom (an import-linter contract in pyproject.toml keeps it so):
`__main__` (options, start-up, the table) → `scenarios/` (one module per scenario) →
`arms` (the queue-throughput arms and how a drain is measured) → `harness` (what every
scenario is given) → `system` (processes, CPU), `load` (HTTP clients), `report`; the
workers it starts (`noop`, `celery_noop`) at the bottom. Tooling shared with run.py and
the tests (process spawner, SMTP sink, databases, wire counter) is in `devtools/`.
"""

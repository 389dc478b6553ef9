"""Tooling that the launcher (run.py), the benchmark (bench/) and the tests share: the
process spawner, the SMTP sink, the test and benchmark databases, the wire counter.

Nothing here is part of the product: jobboard and workers never import it, and it
imports nothing from tests/ or bench/ (import-linter contracts in pyproject.toml).
This file imports nothing, so that run.py can use `devtools.processes` and
`devtools.launcher` (standard library only) before the virtual environment exists.
"""

"""`python -m bench`: jobboard's benchmark (docs/performance.md).

It brings up what it measures — a dedicated database, the web app under gunicorn and the
worker exactly as the Procfile runs them, and an SMTP sink it can slow down — runs each
scenario with bounded counts on loopback only, prints one table and writes the same
figures as JSON. Every target is a ratio measured side by side in the same run, or a
latency percentile, because absolute figures on a shared machine drift between runs.
"""

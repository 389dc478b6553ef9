"""Operator commands: `flask users ...`, `flask otp ...`, `flask jobs ...`, `flask demo ...`."""

from __future__ import annotations

from flask import Flask


def register_cli(app: Flask) -> None:
    from jobboard.jobs.cli import jobs_cli

    app.cli.add_command(jobs_cli)

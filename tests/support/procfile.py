"""The Procfile's entries, run as a platform runs them (see tests/test_procfile.py)."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path

from config import PROJECT_ROOT
from devtools.processes import free_port


def procfile_entries() -> dict[str, str]:
    entries = {}
    for line in (PROJECT_ROOT / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            entries[name.strip()] = command.strip()
    return entries


def production_environment(database_url: str, smtp_port: int) -> dict[str, str]:
    """Production mode configured by environment variables only, on a free port."""
    venv_bin = str(Path(sys.executable).parent)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("FLASK_", "APP_ENV", "DATABASE_URL", "MAIL_", "SECRET", "JWT"))
    }
    env.update(
        PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",
        APP_ENV="production",
        DATABASE_URL=database_url.replace("postgresql://", "postgres://", 1),
        SECRET_KEY=secrets.token_urlsafe(48),
        JWT_SECRET_KEY=secrets.token_urlsafe(48),
        MAIL_SERVER="127.0.0.1",
        MAIL_PORT=str(smtp_port),
        PORT=str(free_port()),
        WEB_CONCURRENCY="1",
    )
    return env

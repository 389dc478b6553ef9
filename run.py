#!/usr/bin/env python3
"""The two commands of the quick start, needing only Python 3.11+ on the machine.

    python3 run.py          run the whole system: database, migrations, web, worker
    python3 run.py test     run the full test suite (lint included)

Each keeps the project's virtual environment (.venv) in step with pyproject.toml first.
Uses the standard library only, because it runs before anything is installed.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
STAMP = VENV / ".jobboard-installed"
DOTENV = ROOT / ".env"


def say(message: str) -> None:
    print(f"[run.py] {message}", flush=True)


def ensure_virtualenv() -> None:
    """Create .venv and install the project (with test extras) when pyproject changed."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs under any python3
        sys.exit(f"jobboard needs Python 3.11 or newer, this is {sys.version.split()[0]}")
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if PYTHON.exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return
    if not PYTHON.exists():
        say(f"creating the virtual environment in {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)
    say("installing jobboard and its dependencies into .venv (about 20 s the first time)")
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    subprocess.run([*pip, "install", "--editable", f"{ROOT}[dev]"], check=True, cwd=ROOT)
    STAMP.write_text(wanted)


def ensure_dotenv() -> None:
    """First local run: a .env for development with freshly generated secrets."""
    if DOTENV.exists():
        return
    DOTENV.write_text(
        "# Written by `python3 run.py` for local development; never commit it.\n"
        "APP_ENV=development\n"
        f"SECRET_KEY={secrets.token_urlsafe(48)}\n"
        f"JWT_SECRET_KEY={secrets.token_urlsafe(48)}\n"
        "# DATABASE_URL=postgresql://user:password@localhost:5432/jobboard\n"
        "# MAIL_SERVER=localhost\n"
        "# MAIL_PORT=1025\n"
    )
    say(f"wrote {DOTENV} (development settings, random secrets)")


def venv_python(code: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [str(PYTHON), "-c", code], env=env, cwd=ROOT, check=True, capture_output=True, text=True
    )
    return result.stdout.strip()


def database_url(env: dict[str, str]) -> str:
    """DATABASE_URL from the environment or .env, else the embedded server's."""
    configured = venv_python("import config, os; print(os.environ.get('DATABASE_URL') or '')", env)
    if configured:
        say("using DATABASE_URL from the environment")
        return configured
    url = venv_python(
        "import logging; logging.disable(logging.INFO)\n"
        "from jobboard import embedded_db; print(embedded_db.database_url())",
        env,
    )
    say(f"embedded PostgreSQL is running; its data lives in {ROOT / '.data' / 'postgres'}")
    say("it keeps running after this command stops (stop it with: python3 run.py stop-db)")
    return url


def pump(prefix: str, stream) -> None:
    for line in iter(stream.readline, ""):
        sys.stdout.write(f"{prefix} | {line}")
        sys.stdout.flush()


def run_system() -> int:
    ensure_dotenv()
    env = {**os.environ, "FLASK_APP": "wsgi", "PYTHONUNBUFFERED": "1"}
    env["DATABASE_URL"] = database_url(env)
    port = env.setdefault("PORT", "8000")
    say("applying migrations (flask db upgrade)")
    subprocess.run([str(BIN / "flask"), "db", "upgrade"], env=env, cwd=ROOT, check=True)

    commands = {
        "web": [
            str(BIN / "gunicorn"),
            "wsgi:app",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            env.get("WEB_CONCURRENCY", "2"),
            "--access-logfile",
            "-",
        ],
        "worker": [str(PYTHON), "-m", "workers"],
    }
    processes = {
        name: subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        for name, command in commands.items()
    }
    for name, process in processes.items():
        threading.Thread(target=pump, args=(f"{name:6}", process.stdout), daemon=True).start()
    say(
        f"API on http://127.0.0.1:{port}/api/docs , dashboard on http://127.0.0.1:{port}/dashboard/"
    )
    say("mail is written to the worker's log unless MAIL_SERVER is set; Ctrl-C stops")

    stopping = threading.Event()
    exited: list[str] = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    try:
        while not stopping.is_set():
            exited = [name for name, p in processes.items() if p.poll() is not None]
            if exited:
                say(f"{', '.join(exited)} exited; stopping the rest")
                break
            stopping.wait(0.5)
    except KeyboardInterrupt:
        pass
    for process in processes.values():
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes.values():
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
    return 0 if stopping.is_set() or not exited else 1


def run_tests(pytest_args: list[str]) -> int:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)  # tests create their own databases
    for check in (["ruff", "check", "."], ["ruff", "format", "--check", "."]):
        say("lint: " + " ".join(check))
        if subprocess.run([str(BIN / check[0]), *check[1:]], cwd=ROOT, env=env).returncode:
            return 1
    if not env.get("TEST_DATABASE_URL"):
        say("TEST_DATABASE_URL unset: tests use the embedded PostgreSQL in .data/postgres")
    return subprocess.run([str(PYTHON), "-m", "pytest", *pytest_args], cwd=ROOT, env=env).returncode


def stop_database() -> int:
    code = "from jobboard import embedded_db; print(embedded_db.stop_server())"
    say(f"stopped the embedded PostgreSQL in {venv_python(code, dict(os.environ))}")
    return 0


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("up", [])
    ensure_virtualenv()
    if command == "up":
        return run_system()
    if command == "test":
        return run_tests(rest)
    if command == "stop-db":
        return stop_database()
    sys.exit(f"usage: python3 run.py [up | test [pytest args] | stop-db], not {command!r}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

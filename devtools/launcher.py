"""What `python3 run.py` does: the commands of the quick start, needing only Python 3.11+
on the machine.

Each keeps the project's virtual environment (.venv) in step with the lock files first.
Standard library only, because it runs before anything is installed (an import-linter
contract and tests/test_devtools.py keep it so).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import venv
from pathlib import Path

from devtools import locks
from devtools.processes import Process

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PYTHON = BIN / "python"
STAMP = VENV / ".jobboard-installed"
DOTENV = ROOT / ".env"


def say(message: str) -> None:
    print(f"[run.py] {message}", flush=True)


def ensure_virtualenv() -> None:
    """Create .venv and install the locked versions into it when the locks (or
    pyproject.toml) changed since the last install."""
    if sys.version_info < (3, 11):  # noqa: UP036 - this file runs under any python3
        sys.exit(f"jobboard needs Python 3.11 or newer, this is {sys.version.split()[0]}")
    wanted = locks.fingerprint()
    if PYTHON.exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return
    started = time.monotonic()
    create_virtualenv()
    running = f"{sys.version_info.major}.{sys.version_info.minor}"
    if running != locks.python_version():
        say(
            f"note: this is Python {running}; .python-version pins {locks.python_version()}"
            " for deployments (the locks hold for both)"
        )
    say(
        f"installing the {locks.locked_count()} locked packages (requirements.txt, "
        "requirements-dev.txt) and jobboard itself into .venv; the first time this "
        "downloads them, which takes a minute or more"
    )
    pip = [str(PYTHON), "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "install", "--upgrade", "pip"], check=True)
    subprocess.run(locks.install_command(PYTHON), check=True, cwd=ROOT)
    # --no-deps installs exactly the lock: a dependency pyproject.toml gained since the
    # lock was made would be missing, which pip check names.
    if subprocess.run([*pip, "check"], cwd=ROOT).returncode:
        sys.exit(f"[run.py] the locks miss a dependency: run `{locks.LOCK_COMMAND}`")
    STAMP.write_text(wanted)
    say(f"installed in {time.monotonic() - started:.0f} s")


def create_virtualenv() -> None:
    if not PYTHON.exists():
        say(f"creating the virtual environment in {VENV}")
        venv.EnvBuilder(with_pip=True).create(VENV)


def regenerate_locks(uv_args: list[str]) -> int:
    """`python3 run.py lock [uv options]`: both lock files anew from pyproject.toml."""
    create_virtualenv()
    say(f"resolving pyproject.toml for Python {locks.python_version()} with uv pip compile")
    locks.regenerate(BIN, uv_args)
    say(
        f"wrote {locks.RUNTIME_LOCK.name} and {locks.DEV_LOCK.name}; the next command installs them"
    )
    return 0


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
    embedded_database_notice("DATABASE_URL")
    url = venv_python(
        "import logging; logging.disable(logging.INFO)\n"
        "from jobboard import embedded_db; print(embedded_db.database_url())",
        env,
    )
    say(f"embedded PostgreSQL is running; its data lives in {ROOT / '.data' / 'postgres'}")
    say("it keeps running after this command stops (stop it with: python3 run.py stop-db)")
    return url


def embedded_database_notice(variable: str) -> None:
    """What starting the embedded PostgreSQL changes on the machine, said beforehand."""
    if os.name == "posix" and os.geteuid() == 0:
        say(
            "running as root: the embedded PostgreSQL runs as the system user 'pgserver'"
            " (created with useradd if missing), and the folders above .data/postgres get"
            f" o+rx so that it can reach its data; set {variable} to use a server of your own"
        )


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
        ],
        "worker": [str(PYTHON), "-m", "workers"],
    }

    def start(name: str) -> Process:
        process = Process(name, commands[name], env)
        threading.Thread(target=pump, args=(f"{name:6}", process.output), daemon=True).start()
        return process

    processes = {name: start(name) for name in commands}
    say(
        f"API on http://127.0.0.1:{port}/api/docs , dashboard on http://127.0.0.1:{port}/dashboard/"
    )
    say("mail is written to the worker's log unless MAIL_SERVER is set; Ctrl-C stops")

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    supervisor = Supervisor(list(commands))
    try:
        while not stopping.is_set():
            now = time.monotonic()
            for name, process in processes.items():
                if process.running():
                    supervisor.running(name, now)
                    continue
                code = process.returncode
                delay = supervisor.exited(name, now)
                if delay is not None:
                    say(f"{name} exited with status {code}; restarting it in {delay:.0f} s")
                elif supervisor.due(name, now):
                    processes[name] = start(name)
                    supervisor.started(name, now)
            stopping.wait(0.5)
    except KeyboardInterrupt:
        pass
    for process in processes.values():  # all at once, then wait for each
        process.signal(signal.SIGTERM)
    for process in processes.values():
        process.stop(timeout=20)
    return 0


class Supervisor:
    """When to restart a child that died: after 1 s, doubling up to 30 s while it keeps
    dying soon after starting; a child that ran a minute starts the count afresh."""

    FIRST_DELAY = 1.0
    MAX_DELAY = 30.0
    HEALTHY_SECONDS = 60.0

    def __init__(self, names: list[str]) -> None:
        self.delay = dict.fromkeys(names, self.FIRST_DELAY)
        self.started_at = dict.fromkeys(names, time.monotonic())
        self.restart_at: dict[str, float] = {}

    def running(self, name: str, now: float) -> None:
        if now - self.started_at[name] > self.HEALTHY_SECONDS:
            self.delay[name] = self.FIRST_DELAY

    def exited(self, name: str, now: float) -> float | None:
        """The delay before its restart, the first time its exit is seen; else None."""
        if name in self.restart_at:
            return None
        delay = self.delay[name]
        self.restart_at[name] = now + delay
        self.delay[name] = min(delay * 2, self.MAX_DELAY)
        return delay

    def due(self, name: str, now: float) -> bool:
        return now >= self.restart_at.get(name, float("inf"))

    def started(self, name: str, now: float) -> None:
        self.restart_at.pop(name, None)
        self.started_at[name] = now


# What the tests need from the system, by Debian package and the commands that show it is
# there: the browser tests drive chromium, the walk-through test runs docs/walkthrough.md's
# curl and jq commands.
TEST_PACKAGES = {
    "chromium": ("chromium", "chromium-browser"),
    "curl": ("curl",),
    "jq": ("jq",),
}
SKIP_SYSTEM_INSTALL = "JOBBOARD_SKIP_SYSTEM_INSTALL"


def ensure_test_packages() -> None:
    """Install the missing TEST_PACKAGES with apt-get when we are root (as on CI), after
    saying so; JOBBOARD_SKIP_SYSTEM_INSTALL=1 leaves the machine alone. The tests
    themselves never change the machine: without a package, the tests that need it are
    skipped, or fail when CI is set."""
    missing = [
        package
        for package, commands in TEST_PACKAGES.items()
        if not any(shutil.which(command) for command in commands)
    ]
    if not missing:
        return
    names = " ".join(missing)
    without = f"the tests that need {names} will be skipped (they fail instead when CI is set)"
    if os.environ.get(SKIP_SYSTEM_INSTALL):
        say(f"{names} missing and {SKIP_SYSTEM_INSTALL} is set: {without}")
        return
    if os.name != "posix" or os.geteuid() != 0 or not shutil.which("apt-get"):
        say(
            f"{names} missing, so {without}; install with "
            f"`sudo apt-get install -y {names}` (Debian/Ubuntu) and run the tests again"
        )
        return
    say(
        f"{names} missing: installing Debian's `{names}` package(s) and their dependencies"
        " system-wide for the tests (apt-get update, then apt-get install; chromium alone is"
        " several hundred MB, apt-get says how much). To leave this machine alone, set"
        f" {SKIP_SYSTEM_INSTALL}=1: {without}"
    )
    if sys.stdin.isatty() and not os.environ.get("CI"):
        answer = input(f"[run.py] install {names} now? [Y/n] ").strip().lower()
        if answer not in ("", "y", "yes"):
            say(f"not installed: {without}")
            return
    started = time.monotonic()
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    apt = ["apt-get", "-o", "DPkg::Lock::Timeout=300", "-q"]
    for command in (
        [*apt, "update"],
        [*apt, "install", "-y", *missing],
    ):
        if subprocess.run(command, env=env).returncode:
            say(f"`{' '.join(command)}` failed: {without}")
            return
    say(f"{names} installed in {time.monotonic() - started:.0f} s")


def run_tests(pytest_args: list[str]) -> int:
    ensure_test_packages()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)  # tests create their own databases
    for check in (
        ["ruff", "check", "."],
        ["ruff", "format", "--check", "."],
        ["lint-imports", "--no-cache"],  # the layering contracts in pyproject.toml
    ):
        say("lint: " + " ".join(check))
        if subprocess.run([str(BIN / check[0]), *check[1:]], cwd=ROOT, env=env).returncode:
            return 1
    if not env.get("TEST_DATABASE_URL"):
        say("TEST_DATABASE_URL unset: tests use the embedded PostgreSQL in .data/postgres")
        embedded_database_notice("TEST_DATABASE_URL")
    return subprocess.run([str(PYTHON), "-m", "pytest", *pytest_args], cwd=ROOT, env=env).returncode


def stop_database() -> int:
    code = "from jobboard import embedded_db; print(embedded_db.stop_server())"
    say(f"stopped the embedded PostgreSQL in {venv_python(code, dict(os.environ))}")
    return 0


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("up", [])
    if command == "lock":
        return regenerate_locks(rest)
    ensure_virtualenv()
    if command == "up":
        return run_system()
    if command == "test":
        return run_tests(rest)
    if command == "stop-db":
        return stop_database()
    sys.exit(f"usage: python3 run.py [up | test [pytest args] | stop-db | lock], not {command!r}")

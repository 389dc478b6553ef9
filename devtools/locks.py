"""The lock files: exact versions of every package jobboard installs, made from
pyproject.toml's ranges by `python3 run.py lock`.

- requirements.txt: the runtime dependencies, then the project itself (`-e .`). Heroku's
  Python buildpack installs this file as it is (`pip install -r requirements.txt`).
- requirements-dev.txt: the runtime and the `dev` extra's dependencies (tests, linters),
  the runtime ones at the versions of requirements.txt (resolved second, constrained to
  the first).
- .python-version: the Python that Heroku runs and that the locks are resolved for (as
  the lowest version: the locks are universal, with markers, for every Python allowed by
  `requires-python` and every platform).

run.py installs both locks with `pip install --no-deps` (so nothing but the locked
versions, the project included, comes in), then `pip check`. The `bench` extra (Celery
and Redis, an optional anchor of the benchmark) is not locked.

The tool is uv's `pip compile`: it resolves for a Python version and platforms other
than the running one (the locks do not depend on who ran the command), it needs nothing
but PyPI, and it ships as a wheel on PyPI; `lock` installs the pinned release below into
.venv when it is missing. An existing lock's versions are kept where they still fit
(`python3 run.py lock --upgrade` moves everything to the newest allowed).

Standard library only: run.py imports this before the virtual environment exists.
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
RUNTIME_LOCK = ROOT / "requirements.txt"
DEV_LOCK = ROOT / "requirements-dev.txt"
PYTHON_VERSION_FILE = ROOT / ".python-version"
UV_VERSION = "0.13.9"
LOCK_COMMAND = "python3 run.py lock"
PROJECT_LINE = "-e ."
PROJECT_NOTE = (
    "# The project itself, installed last (its dependencies are the lines above; run.py\n"
    "# installs it editable with --no-deps like the rest).\n"
)


def python_version() -> str:
    """The `major.minor` of .python-version."""
    return PYTHON_VERSION_FILE.read_text().strip()


def fingerprint() -> str:
    """Changes whenever what `.venv` should hold changes: the locks, and pyproject.toml
    (the project's own metadata, such as its entry points)."""
    digest = hashlib.sha256()
    for path in (RUNTIME_LOCK, DEV_LOCK, PYPROJECT):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def install_command(python: Path) -> list[str]:
    """pip installing exactly the locked versions and the project (editable)."""
    return [
        str(python),
        "-m",
        "pip",
        "install",
        "--disable-pip-version-check",
        "--quiet",
        "--quiet",  # errors only: not setuptools' notes on building the project editable
        "--no-deps",
        "-r",
        str(RUNTIME_LOCK),
        "-r",
        str(DEV_LOCK),
    ]


def locked_count() -> int:
    """How many packages the locks pin (both files together)."""
    names = set()
    for path in (RUNTIME_LOCK, DEV_LOCK):
        for line in path.read_text().splitlines():
            if line and not line.startswith((" ", "#", "-")):
                names.add(line.split("==", 1)[0].strip().lower())
    return len(names)


def regenerate(bin_dir: Path, extra_args: list[str]) -> None:
    """Both locks from pyproject.toml with uv (installed into the virtual environment of
    `bin_dir` first if needed); `extra_args` go to each `uv pip compile` (`--upgrade`)."""
    uv = bin_dir / "uv"
    if not uv.exists() or UV_VERSION not in _output([str(uv), "--version"]):
        subprocess.run(
            [str(bin_dir / "python"), "-m", "pip", "install", "--quiet", f"uv=={UV_VERSION}"],
            check=True,
        )
    compile_ = [
        str(uv),
        "pip",
        "compile",
        "--quiet",
        "--universal",
        "--python-version",
        python_version(),
        "--custom-compile-command",
        LOCK_COMMAND,
        *extra_args,
        str(PYPROJECT),
    ]
    if RUNTIME_LOCK.exists():  # uv keeps an output file's versions; the project line is ours
        RUNTIME_LOCK.write_text(RUNTIME_LOCK.read_text().replace(PROJECT_NOTE + PROJECT_LINE, ""))
    subprocess.run([*compile_, "-o", str(RUNTIME_LOCK)], check=True, cwd=ROOT)
    subprocess.run(
        [*compile_, "--extra", "dev", "--constraint", str(RUNTIME_LOCK), "-o", str(DEV_LOCK)],
        check=True,
        cwd=ROOT,
    )
    with RUNTIME_LOCK.open("a") as lock:
        lock.write(PROJECT_NOTE + PROJECT_LINE + "\n")


def _output(argv: list[str]) -> str:
    try:
        return subprocess.run(argv, capture_output=True, text=True).stdout
    except OSError:
        return ""

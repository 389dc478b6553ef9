"""The lock files match pyproject.toml: every dependency is pinned within its range (with
the packages its extras bring), the runtime pins are the same in both files, the
project itself is the runtime lock's last line (what Heroku's buildpack installs), the
Python version is pinned, and the environment these tests run in is the lock.
`python3 run.py lock` makes the files (devtools/locks.py)."""

from __future__ import annotations

import tomllib
from importlib.metadata import PackageNotFoundError, version
from importlib.metadata import requires as requirements_of
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from devtools import locks

PROJECT = tomllib.loads(locks.PYPROJECT.read_text())["project"]


def pins(path: Path) -> dict[str, Requirement]:
    """name -> `name==version ; marker` of each pinned line."""
    found: dict[str, Requirement] = {}
    for line in path.read_text().splitlines():
        if not line or line.startswith((" ", "#", "-")):
            continue
        requirement = Requirement(line)
        (specifier,) = requirement.specifier
        assert specifier.operator == "==", line
        name = canonicalize_name(requirement.name)
        assert name not in found, f"{name} pinned twice in {path.name}"
        found[name] = requirement
    return found


RUNTIME = pins(locks.RUNTIME_LOCK)
DEV = pins(locks.DEV_LOCK)


def pinned_version(lock: dict[str, Requirement], name: str) -> str:
    (specifier,) = lock[canonicalize_name(name)].specifier
    return specifier.version


def with_extras(requirement: Requirement) -> list[Requirement]:
    """The requirement and what its extras add (`psycopg[binary,pool]` brings
    psycopg-binary and psycopg-pool), read from the installed distribution."""
    added = []
    for extra in sorted(requirement.extras):
        for line in requirements_of(requirement.name) or []:
            brought = Requirement(line)
            if brought.marker is not None and brought.marker.evaluate({"extra": extra}):
                added.append(brought)
    return [requirement, *added]


@pytest.mark.parametrize(
    ("group", "lock_path"),
    [("dependencies", locks.RUNTIME_LOCK), ("dev", locks.DEV_LOCK)],
)
def test_every_dependency_is_pinned_within_its_range(group, lock_path):
    declared = (
        PROJECT["dependencies"]
        if group == "dependencies"
        else (PROJECT["optional-dependencies"][group])
    )
    lock = pins(lock_path)
    for line in declared:
        for requirement in with_extras(Requirement(line)):
            name = canonicalize_name(requirement.name)
            assert name in lock, (
                f"{requirement} is not in {lock_path.name}: run python3 run.py lock"
            )
            pinned = pinned_version(lock, name)
            assert requirement.specifier.contains(pinned, prereleases=True), (
                f"{lock_path.name} pins {name}=={pinned}, outside {requirement}"
            )


def test_the_dev_lock_holds_every_runtime_pin_at_the_same_version():
    for name, requirement in RUNTIME.items():
        assert name in DEV, f"{name} missing from requirements-dev.txt"
        assert str(DEV[name].specifier) == str(requirement.specifier), name


def test_the_runtime_lock_installs_the_project_last_and_names_its_command():
    text = locks.RUNTIME_LOCK.read_text()
    assert text.rstrip().endswith(locks.PROJECT_LINE)
    for path in (locks.RUNTIME_LOCK, locks.DEV_LOCK):
        assert f"#    {locks.LOCK_COMMAND}\n" in path.read_text()
    # The bench extra (an optional anchor) is not locked.
    assert "celery" not in DEV


def test_the_python_version_is_pinned_and_allowed():
    pinned = locks.python_version()
    assert pinned.count(".") == 1, "major.minor: Heroku takes its latest patch release"
    assert Version(pinned) in SpecifierSet(PROJECT["requires-python"])


def test_this_environment_is_the_lock():
    """run.py installs the locks with --no-deps: what the tests import is what they pin."""
    different = {}
    for name, requirement in DEV.items():
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue  # not for this Python or platform
        try:
            installed = version(name)
        except PackageNotFoundError:
            installed = None
        if installed != pinned_version(DEV, name):
            different[name] = (installed, pinned_version(DEV, name))
    assert not different, f"installed vs locked (run python3 run.py): {different}"

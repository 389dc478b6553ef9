"""The tooling around the product: run.py's launcher needs nothing but the standard
library (it runs before the virtual environment exists), and the benchmark's scenarios
are registered where `python -m bench` finds them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from config import PROJECT_ROOT


def test_run_py_and_its_launcher_import_with_the_standard_library_alone():
    # -S: no site-packages, so any third-party or virtual-environment import fails; -I
    # would also drop the current directory, so the repository goes first by hand.
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); "
        "import runpy; runpy.run_path(sys.argv[1] + '/run.py', run_name='not_main'); "
        "import devtools.launcher, devtools.locks, devtools.processes; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('jobboard', 'workers', 'config', 'tests', 'bench')))"
    )
    finished = subprocess.run(
        [sys.executable, "-S", "-c", code, str(PROJECT_ROOT)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.strip() == "[]"


def test_every_benchmark_scenario_is_selectable_and_declares_its_options():
    from bench.__main__ import parse_arguments
    from bench.scenarios import SCENARIOS

    numbers = {number for scenario in SCENARIOS for number in scenario.selected_by}
    assert numbers == {"1", "2", "3", "4", "5", "6", "7", "8"}
    defaults = parse_arguments([])
    # The operations console at size (7) seeds a million jobs: asked for by number only.
    assert defaults.scenarios == numbers - {"7"}
    assert defaults.timed_ahead == (2.0, 5.0)
    assert (defaults.backlog_small, defaults.backlog_large) == (5000, 50_000)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--scenarios", "1,9"], "unknown scenarios: 9"),
        (["--small-backlog", "10", "--backlog", "5"], "--small-backlog must be between"),
        (["--rounds", "0"], "argument --rounds: must be >= 1"),
        (["--timed-ahead", "soon"], "argument --timed-ahead: expected seconds"),
    ],
)
def test_the_benchmark_refuses_bad_options_naming_them(argv, message, capsys):
    from bench.__main__ import parse_arguments

    with pytest.raises(SystemExit) as exit_info:
        parse_arguments(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


# --- what the test command installs on the machine -----------------------------------------


@pytest.fixture
def no_chromium(monkeypatch):
    from devtools import launcher

    monkeypatch.setattr(
        launcher.shutil, "which", lambda name: "/usr/bin/apt-get" if name == "apt-get" else None
    )
    monkeypatch.setattr(launcher.os, "geteuid", lambda: 0)
    monkeypatch.delenv(launcher.SKIP_SYSTEM_INSTALL, raising=False)
    commands: list[list[str]] = []

    def run(command, **_kwargs):
        print("RAN " + " ".join(command))
        commands.append(command)
        return subprocess.CompletedProcess(command, 0)

    monkeypatch.setattr(launcher.subprocess, "run", run)
    return launcher, commands


def test_the_test_command_says_what_it_installs_before_installing_it(no_chromium, capsys):
    launcher, commands = no_chromium
    launcher.ensure_test_packages()
    said = capsys.readouterr().out
    assert [command[-1] for command in commands] == ["update", "jq"]
    assert commands[1][-3:] == ["chromium", "curl", "jq"]
    notice = said.index("installing Debian's `chromium curl jq` package(s)")
    assert notice < said.index("RAN apt-get")
    assert "JOBBOARD_SKIP_SYSTEM_INSTALL=1" in said[: said.index("RAN apt-get")]


def test_the_browser_install_can_be_skipped(no_chromium, monkeypatch, capsys):
    launcher, commands = no_chromium
    monkeypatch.setenv(launcher.SKIP_SYSTEM_INSTALL, "1")
    launcher.ensure_test_packages()
    assert commands == []
    assert "skipped (they fail instead when CI is set)" in capsys.readouterr().out


@pytest.mark.parametrize("ci", ["", "true"])
def test_without_chromium_the_browser_tests_skip_but_fail_in_ci(monkeypatch, ci):
    from tests.support import browser

    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", ci)
    expected = pytest.fail.Exception if ci else pytest.skip.Exception
    with pytest.raises(expected):
        browser.chromium_path()

"""docs/performance.md's benchmark commands against the benchmark: every `python -m bench`
command on the page, in a code block or inline, parses with the benchmark's own arguments,
and every variable it sets is one the configuration reads. Running them is the benchmark's
business (minutes each); tests/test_bench.py runs a small one."""

from __future__ import annotations

import re
import shlex

import pytest

import config
from bench.__main__ import parse_arguments
from config import PROJECT_ROOT

PAGE = PROJECT_ROOT / "docs" / "performance.md"
BENCH = re.compile(r"(?:^|\s)(?:\S*/)?python -m bench(?:\s|$)")
# Read by the benchmark itself rather than by config.py.
BENCH_VARIABLES = {"REDIS_URL"}


def commands() -> list[str]:
    """The page's `python -m bench` commands: each line of a fenced block, each inline
    code span (which may wrap over a line break), comments left out."""
    text = PAGE.read_text()
    found: list[str] = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.S):
        found += [line.split("#", 1)[0] for line in block.splitlines()]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    found += [" ".join(span.split()) for span in re.findall(r"`([^`]+)`", prose)]
    return [command.strip() for command in found if BENCH.search(command)]


def test_the_page_shows_bench_commands():
    assert len(commands()) >= 6, commands()


@pytest.mark.parametrize("command", commands())
def test_each_bench_command_parses_and_sets_only_known_variables(command):
    words = shlex.split(command)
    at = words.index("-m")
    assert words[at + 1] == "bench", command
    for assignment in words[: at - 1]:
        name, _, value = assignment.partition("=")
        assert value, f"{assignment!r} in {command!r} is not a variable assignment"
        assert hasattr(config.Config, name) or name in BENCH_VARIABLES, name
    arguments = words[at + 2 :]
    if "--help" in arguments:
        with pytest.raises(SystemExit) as exit_:
            parse_arguments(arguments)
        assert exit_.value.code == 0
    else:
        parse_arguments(arguments)

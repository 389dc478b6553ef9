"""Running docs/walkthrough.md as a reader would: its ```sh blocks in order, in one bash
session, each compared with the ```text block right after it (what it prints; `…` stands
for anything within a line). A `read` in a block is answered with the code of the next
email that carries one, as the reader types it from the worker's log."""

from __future__ import annotations

import queue
import re
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

FENCE = re.compile(r"^```(\w*)\s*$")
ANYTHING = "…"
STEP_DONE = "__walkthrough_step_done__"


@dataclass(frozen=True)
class Step:
    commands: str
    prints: str | None  # None: the page shows no output to compare
    line: int  # where the commands start on the page

    @property
    def reads(self) -> int:
        """How many answers the reader types during this step."""
        return len(re.findall(r"^\s*read\b", self.commands, flags=re.MULTILINE))


def steps(page: str) -> list[Step]:
    """The page's ```sh blocks, each with the ```text block that follows it, if only blank
    lines stand between them."""
    blocks: list[tuple[str, str, int, int]] = []  # language, text, first line, last line
    lines = page.splitlines()
    index = 0
    while index < len(lines):
        opening = FENCE.match(lines[index])
        if opening is None:
            index += 1
            continue
        end = index + 1
        while end < len(lines) and not lines[end].startswith("```"):
            end += 1
        blocks.append((opening.group(1), "\n".join(lines[index + 1 : end]), index + 2, end))
        index = end + 1
    found = []
    for position, (language, text, first, last) in enumerate(blocks):
        if language != "sh":
            continue
        prints = None
        if position + 1 < len(blocks):
            next_language, next_text, next_first, _ = blocks[position + 1]
            between = lines[last + 1 : next_first - 2]
            if next_language == "text" and not any(line.strip() for line in between):
                prints = next_text
        found.append(Step(text, prints, first))
    return found


def matches(expected: str, printed: str) -> bool:
    """Line by line, `…` matching anything within a line."""
    wanted = expected.rstrip("\n").splitlines()
    got = printed.rstrip("\n").splitlines()
    if len(wanted) != len(got):
        return False
    for pattern, line in zip(wanted, got, strict=True):
        regex = ".*?".join(re.escape(part) for part in pattern.rstrip().split(ANYTHING))
        if re.fullmatch(regex, line.rstrip()) is None:
            return False
    return True


class ShellSession:
    """One `bash` that runs the steps as a reader's shell would: variables and functions
    carry over from step to step, and a failing command ends it (`set -e`)."""

    def __init__(self, env: dict[str, str], cwd: Path, scratch: Path, log: Path) -> None:
        self.scratch = scratch
        self.log = log
        self._lines: queue.Queue[str | None] = queue.Queue()
        with log.open("w") as stderr:
            self.popen = subprocess.Popen(
                ["bash", "--noprofile", "--norc"],
                cwd=cwd,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                start_new_session=True,
            )
        threading.Thread(target=self._read_output, daemon=True).start()
        self._send("set -e -o pipefail\n")
        self._count = 0

    def _read_output(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def _send(self, text: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(text)
        self.popen.stdin.flush()

    def run(self, step: Step, answers: list[str], timeout: float) -> str:
        """What `step` prints; `answers` are typed in, one per `read`."""
        self._count += 1
        script = self.scratch / f"step-{self._count}.sh"
        script.write_text(step.commands + "\n")
        self._send(f"source {script}; printf '\\n{STEP_DONE}\\n'\n")
        for answer in answers:
            self._send(answer + "\n")
        printed: list[str] = []
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"the step at line {step.line} did not finish within {timeout} s; "
                    f"it printed {printed}; bash's stderr is in {self.log}"
                ) from None
            if line is None:
                raise AssertionError(
                    f"the step at line {step.line} failed (a command exited non-zero); "
                    f"it printed {printed}; bash's stderr:\n{self.log.read_text()[-3000:]}"
                )
            if line == STEP_DONE:
                return "\n".join(printed).rstrip("\n") + "\n"
            printed.append(line)

    def close(self) -> None:
        assert self.popen.stdin is not None and self.popen.stdout is not None
        if not self.popen.stdin.closed:
            self.popen.stdin.close()  # end of input: bash exits
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=10)
        self.popen.stdout.close()

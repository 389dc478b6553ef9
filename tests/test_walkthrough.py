"""docs/walkthrough.md, run as written against the live system: the Procfile's web and
worker processes on a fresh database, mail to the SMTP sink. Every command of the page
runs, in order, in one shell, and prints what the page says it prints.

Changing the page: `WALKTHROUGH_RECORD=1 pytest tests/test_walkthrough.py -s` prints what
each step printed instead of comparing, to paste under the step."""

from __future__ import annotations

import json
import os
import re
import shutil
import urllib.request
from email.message import Message

import psycopg
import pytest

from config import PROJECT_ROOT, libpq_url
from devtools.processes import Process
from devtools.smtp import Mailbox
from tests.support.polling import wait_until
from tests.support.procfile import procfile_entries
from tests.support.walkthrough import ShellSession, matches, steps
from workers.__main__ import worker_set

PAGE = PROJECT_ROOT / "docs" / "walkthrough.md"
CODE_IN_SUBJECT = re.compile(r"code: (\d{6})$")
STEP_TIMEOUT = 60.0


def test_the_page_has_steps_and_shows_what_they_print():
    found = steps(PAGE.read_text())
    assert len(found) >= 10
    assert sum(step.prints is not None for step in found) >= 10
    assert any(step.reads for step in found)


def test_output_patterns():
    assert matches('{"id":1,"token":"…"}\n', '{"id":1,"token":"abc.def"}\n')
    assert not matches('{"id":1}\n', '{"id":2}\n')
    assert not matches("one\n", "one\ntwo\n")


class Codes:
    """The codes the sink received, handed out in order of arrival, as a reader copies
    them from the worker's log."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox
        self.given = 0

    def next(self) -> str:
        def with_code(message: Message) -> bool:
            return CODE_IN_SUBJECT.search(message["Subject"] or "") is not None

        def next_code() -> str | None:
            carrying = [m for m in self.mailbox.messages if with_code(m)]
            return carrying[self.given] if len(carrying) > self.given else None

        message = wait_until(next_code, timeout=30)
        self.given += 1
        return CODE_IN_SUBJECT.search(message["Subject"]).group(1)


def test_the_walkthrough_runs_as_written(production_env, mailbox, tmp_path):
    missing = [tool for tool in ("curl", "jq") if shutil.which(tool) is None]
    if missing:
        reason = (
            f"the walk-through needs {' and '.join(missing)}: `python3 run.py test` installs "
            "them when run as root; otherwise install them yourself"
        )
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    entries = procfile_entries()
    web = Process.shell("web", entries["web"], production_env, tmp_path / "web.log")
    worker = Process.shell("worker", entries["worker"], production_env, tmp_path / "worker.log")
    shell = None
    try:
        wait_for_system(production_env)
        shell = ShellSession(production_env, PROJECT_ROOT, tmp_path, tmp_path / "shell.log")
        codes = Codes(mailbox)
        for step in steps(PAGE.read_text()):
            answers = [codes.next() for _ in range(step.reads)]
            printed = shell.run(step, answers, timeout=STEP_TIMEOUT)
            if os.environ.get("WALKTHROUGH_RECORD"):
                print(f"--- docs/walkthrough.md line {step.line}\n{printed}", flush=True)
                continue
            if step.prints is not None:
                assert matches(step.prints, printed), (
                    f"docs/walkthrough.md line {step.line}: the page shows\n{step.prints}\n"
                    f"but the commands printed\n{printed}"
                )
    finally:
        if shell is not None:
            shell.close()
        for process in (web, worker):
            process.stop()


def wait_for_system(env: dict[str, str]) -> None:
    url = f"http://127.0.0.1:{env['PORT']}/health"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.load(response)["status"] == "ok"
        except OSError:
            return False

    def worker_registered() -> bool:
        with psycopg.connect(libpq_url(env["DATABASE_URL"])) as connection:
            row = connection.execute("SELECT count(*) FROM procrastinate_workers").fetchone()
            return bool(row and row[0] == len(worker_set()))

    wait_until(healthy, timeout=30)
    wait_until(worker_registered, timeout=30)

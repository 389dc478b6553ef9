"""The shared mechanisms that run.py and bench rely on too (`devtools`): the process
runner stops a whole process group, politely first; the SMTP sink counts or keeps mail;
and the tests' factories give a row in a status by trait."""

from __future__ import annotations

import os
import smtplib
import sys
from email.message import EmailMessage

import psutil

from devtools.processes import Process
from devtools.smtp import Mailbox, SmtpServer
from jobboard.models import BidStatus, JobStatus
from tests.support.factories import BidFactory, JobFactory
from tests.support.polling import wait_until


def test_stop_ends_a_process_and_its_children_with_sigterm(tmp_path):
    # A shell whose child is a sleeping python: both are in the group stop() signals.
    command = f"{sys.executable} -c 'import time; time.sleep(60)' & wait"
    process = Process.shell("sleeper", command, dict(os.environ), tmp_path / "sleeper.log")
    children = wait_until(lambda: psutil.Process(process.pid).children(), timeout=10)
    assert process.running()

    assert process.stop(timeout=10) is not None
    assert not process.running()
    assert not any(child.is_running() and child.status() != "zombie" for child in children)


def test_stop_kills_a_process_that_ignores_sigterm(tmp_path):
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"  # noqa: E501
    process = Process("stubborn", [sys.executable, "-c", code], dict(os.environ))
    assert process.output.readline().strip() == "ready"

    assert process.stop(timeout=0.5) == -9  # SIGKILL after the grace period
    assert not process.running()


def test_the_sink_keeps_messages_or_only_counts_them():
    for keep in (True, False):
        server = SmtpServer(Mailbox(keep=keep))
        try:
            message = EmailMessage()
            message["From"], message["To"], message["Subject"] = (
                "a@example.com",
                "b@example.com",
                "hi",
            )
            message.set_content("hello")
            with smtplib.SMTP("127.0.0.1", server.port, timeout=10) as client:
                client.send_message(message)
            assert wait_until(lambda server=server: server.mailbox.received == 1, timeout=10)
            assert len(server.mailbox.messages) == (1 if keep else 0)
        finally:
            server.stop()


def test_factories_make_rows_in_a_status_by_trait(app):
    done = JobFactory(completed=True)
    assert done.status == JobStatus.COMPLETED and done.attempts == 1 and done.finished_at
    waiting = JobFactory(owner=done.owner_id)
    assert waiting.status == JobStatus.PENDING and waiting.attempts == 0
    assert waiting.finished_at is None and waiting.owner_id == done.owner_id

    won = BidFactory(job=waiting, accepted=True)
    assert won.status == BidStatus.ACCEPTED and waiting.assignee_id == won.bidder_id

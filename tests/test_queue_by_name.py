"""The web side defers by task name (`jobboard.queue.defer`) and never loads the worker's
task modules: no periodic task is registered in the web process, on its first request
or later, and its start says nothing of Procrastinate's built-in tasks."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from config import PROJECT_ROOT
from workers.app import task_app

# Run in a process of its own: the test process has imported every task module already.
WEB_PROCESS = """
import json, sys
from jobboard import create_app
from workers.app import task_app
app = create_app()
response = app.test_client().post(
    "/api/register/", json={"email": "first@example.com", "password": "a long password here"}
)
print(json.dumps({
    "status": response.status_code,
    "task_modules": sorted(m for m in sys.modules if m.startswith("workers.")),
    "periodic": len(task_app.periodic_registry.periodic_tasks),
}))
"""


def test_a_request_that_defers_loads_no_task_module(fresh_database, smtp_server):
    env = {
        **os.environ,
        "APP_ENV": "testing",
        "DATABASE_URL": fresh_database,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": str(smtp_server.port),
    }
    finished = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    seen = json.loads(finished.stdout.strip().splitlines()[-1])
    assert seen["status"] == 201  # it deferred the verification email
    assert seen["task_modules"] == ["workers.app", "workers.processors"]
    assert seen["periodic"] == 0
    assert "Registering task" not in finished.stderr
    assert "Adding tasks from blueprint" not in finished.stderr  # a quiet start


def test_no_task_sets_defaults_that_a_deferral_by_name_would_skip():
    """`defer` passes queue, lock, queueing lock and priority itself; a task's own defaults
    for them apply only when deferred through the task object. Periodic tasks are
    deferred by the worker, through the task object, so they may have some."""
    task_app.perform_import_paths()
    periodic = {entry.task.name for entry in task_app.periodic_registry.periodic_tasks.values()}
    checked = 0
    for name, task in task_app.tasks.items():
        if name != task.name or name.startswith("builtin:") or name in periodic:
            continue  # an alias, Procrastinate's own, or deferred by the worker
        assert (task.lock, task.queueing_lock, task.priority) == (None, None, 0), name
        checked += 1
    assert checked >= 5

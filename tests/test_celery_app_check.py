"""visual_recs.W004: tasks sent with a Celery app that is not the project's, in checks and at first send."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery import Celery

from tests.celery_app import app as suite_app
from visual_recs.checks import check_celery_app

REPO = Path(__file__).resolve().parents[1]
CLOSED_PORT_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1: a send fails at once

# A project that installed visual_recs and named a broker, but whose package loads no Celery app.
FRESH_SETTINGS = f"""
SECRET_KEY = "fresh"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "visual_recs"]
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}}}
VISUAL_RECS = {{}}
CELERY_BROKER_URL = {CLOSED_PORT_URL!r}
"""

# Runs the checks, then sends two tasks, in a process that imports only what argv[1] names.
SCRIPT = """
import importlib, json, logging, sys
import django
from celery import _state

if sys.argv[1]:
    importlib.import_module(sys.argv[1])
django.setup()
from django.core import checks

warnings = [{"msg": m.msg, "hint": m.hint} for m in checks.run_checks() if m.id == "visual_recs.W004"]
fallback_made_by_checks = _state.default_app is not None

from visual_recs import queue, tasks

logged = []
handler = logging.Handler()
handler.emit = lambda record: logged.append(record.getMessage())
logging.getLogger("visual_recs.queue").addHandler(handler)
queue.enqueue(tasks.index_object, "shop", "product", "1")
queue.enqueue(tasks.index_object, "shop", "product", "2")
print(json.dumps({"warnings": warnings, "fallback_made_by_checks": fallback_made_by_checks, "logged": logged}))
"""


def run_fresh_project(tmp_path, project_app: str = "") -> dict:
    (tmp_path / "fresh_settings.py").write_text(FRESH_SETTINGS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "CELERY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="fresh_settings",
        PYTHONPATH=os.pathsep.join([str(tmp_path), str(REPO)]),
        # Celery's fallback app reads no settings: this keeps its sends off a broker on this machine.
        CELERY_BROKER_URL=CLOSED_PORT_URL,
    )
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, project_app], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_project_that_loads_no_celery_app_gets_w004_and_one_warning_at_first_send(tmp_path):
    result = run_fresh_project(tmp_path)

    [warning] = result["warnings"]
    assert "Celery's fallback app, not the project's" in warning["msg"]
    assert "from .celery import app as celery_app" in warning["hint"]
    assert "app.config_from_object('django.conf:settings', namespace='CELERY')" in warning["hint"]
    assert result["fallback_made_by_checks"] is False  # the check only looks
    app_warnings = [message for message in result["logged"] if "visual_recs.W004" in message]
    assert len(app_warnings) == 1, result["logged"]  # two sends, one warning
    assert "fallback app" in app_warnings[0] and "from .celery import app as celery_app" in app_warnings[0]


@pytest.mark.parametrize("project_app", ["tests.celery_app", "demo_shop"])
def test_a_project_that_loads_its_celery_app_gets_no_w004(tmp_path, project_app):
    result = run_fresh_project(tmp_path, project_app)

    assert result["warnings"] == []
    assert not [message for message in result["logged"] if "visual_recs.W004" in message], result["logged"]


def test_an_app_that_did_not_read_the_django_settings_gets_w004(settings):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6379/14"
    unconfigured = Celery("shop", set_as_current=False)  # no config_from_object
    unconfigured.set_current()
    try:
        [warning] = check_celery_app()
    finally:
        suite_app.set_current()
        unconfigured.close()
    assert warning.id == "visual_recs.W004"
    assert "'shop' has no broker though settings.CELERY_BROKER_URL names one" in warning.msg
    assert "from .celery import app as celery_app" in warning.hint


def test_the_suites_app_gets_no_w004():
    assert check_celery_app() == []

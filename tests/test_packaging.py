"""What a shop installs: a runtime without TensorFlow, and extras that keep the shop's Django.

The first test is cheap and always runs: a web process's imports and a search by photo, in a
fresh interpreter, load none of the converters. The others build virtualenvs from this checkout
with pip (marked ``install``: a few minutes the first time, pip's cache after).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.install_size import build_wheel, fresh_venv, imports, installed_bytes

REPO = Path(__file__).resolve().parents[1]
# The `convert` extra's modules, and scikit-learn (a dependency of none of ours; NNCF brings it).
CONVERTERS = ("tensorflow", "keras", "tf2onnx", "onnx", "nncf", "h5py", "sklearn")
RUNTIME_LIMIT_MB = 700

WEB_PROCESS = """
import io, sys, django
django.setup()
from django.core.management import call_command
from django.test import Client
from PIL import Image

call_command("migrate", verbosity=0)
import tests.urls, visual_recs.admin, visual_recs.api.views, visual_recs.templatetags.visual_recs  # noqa
photo = io.BytesIO()
Image.new("RGB", (64, 64), (200, 30, 30)).save(photo, "PNG")
photo.name = "query.png"
photo.seek(0)
answer = Client().post("/api/visual-recs/products/search/", {"image": photo})
print(answer.status_code, sorted(m for m in %r if m in sys.modules))
"""


def test_a_web_process_and_a_search_by_photo_import_none_of_the_converters(resnet_weights, tmp_path):
    # Its own SQLite database, so the suite's index backend too (the pgvector pass names PgvectorIndex).
    env = {
        **{name: value for name, value in os.environ.items() if name != "VISUAL_RECS_TEST_INDEX"},
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'web.sqlite3'}",
    }
    result = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS % (CONVERTERS,)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    # 200: the photo went through the fast extractor (no products yet, so no results).
    assert result.stdout.splitlines()[-1] == "200 []", result.stdout[-3000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    return build_wheel(tmp_path_factory.mktemp("dist"))


@pytest.mark.install
def test_the_runtime_with_the_api_has_no_tensorflow_and_stays_small(wheel, tmp_path):
    python = fresh_venv(tmp_path / "venv", f"{wheel}[api]")
    assert [module for module in CONVERTERS if imports(python, module)] == []
    assert imports(python, "openvino") and imports(python, "rest_framework")
    size_mb = installed_bytes(python) / 2**20
    assert size_mb < RUNTIME_LIMIT_MB, f"{size_mb:.0f} MB installed"


@pytest.mark.install
def test_the_api_extra_keeps_a_shops_django_42(wheel, tmp_path):
    python = fresh_venv(tmp_path / "venv", "Django~=4.2.0", f"{wheel}[api]")
    version = subprocess.run([str(python), "-c", "import django; print(django.get_version())"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version.startswith("4.2."), f"installing [api] changed Django 4.2 into {version}"
    assert imports(python, "rest_framework") and imports(python, "drf_spectacular")

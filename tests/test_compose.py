"""docker-compose.yml and the Dockerfile, checked against what the project reads.

Docker does not run here, so these tests read the files: the compose environment is fed to
demo_shop/settings.py as it would be in the container, and every variable compose sets must
be one that the settings or the app actually read.
"""

from __future__ import annotations

import re
import runpy
import shlex
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (REPO / "Dockerfile").read_text()
APP_SERVICES = ("web", "worker")
# ${NAME:-default} / ${NAME-default} / ${NAME}, as compose interpolates them from the host.
_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?::?-(?P<default>[^}]*))?\}")
_ENV_READ = re.compile(r"""environ(?:\.get|\.setdefault)?[(\[]\s*["'](\w+)["']|getenv\(\s*["'](\w+)["']""")


def interpolated(value: str) -> str:
    """``value`` as compose would pass it on a host that sets none of the variables."""
    return _INTERPOLATION.sub(lambda m: m["default"] or "", str(value))


def environment(service: str) -> dict[str, str]:
    env = SERVICES[service].get("environment") or {}
    if isinstance(env, list):  # the "NAME=value" form
        env = dict(item.split("=", 1) for item in env)
    return {name: interpolated(value) for name, value in env.items()}


def command(service: str) -> list[str]:
    cmd = SERVICES[service]["command"]
    return shlex.split(cmd) if isinstance(cmd, str) else list(cmd)


def mounts(service: str) -> dict[str, str]:
    """Container path -> source (volume name or host path) of the service's volumes."""
    found = {}
    for entry in SERVICES[service].get("volumes", []):
        source, target = interpolated(entry).split(":")[:2]
        found[target] = source
    return found


def env_names_read_by_the_project() -> set[str]:
    """Environment variables the demo's settings and the app read (by their source)."""
    names: set[str] = set()
    for path in [*(REPO / "demo_shop").rglob("*.py"), *(REPO / "visual_recs").rglob("*.py")]:
        source = path.read_text()
        names.update(a or b for a, b in _ENV_READ.findall(source))
        if "dj_database_url.config(" in source and "env=" not in source:
            names.add("DATABASE_URL")  # dj-database-url's default variable
    return names


def dockerfile_env() -> dict[str, str]:
    env = {}
    for block in re.findall(r"^ENV\s+((?:.*\\\n)*.*)$", DOCKERFILE, flags=re.MULTILINE):
        for pair in shlex.split(block.replace("\\\n", " ")):
            name, _, value = pair.partition("=")
            env[name] = value
    return env


@pytest.fixture(params=APP_SERVICES)
def app_service(request) -> str:
    return request.param


@pytest.fixture
def container_settings(monkeypatch) -> dict:
    """demo_shop/settings.py evaluated with the web container's environment (image ENV + compose)."""
    for name in ("DATABASE_URL", "CELERY_BROKER_URL", "MEDIA_ROOT", "DJANGO_DEBUG", "DJANGO_ALLOWED_HOSTS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {**dockerfile_env(), **environment("web")}.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(REPO / "demo_shop" / "settings.py"))


def test_the_four_services_and_their_images():
    assert {"web", "worker", "redis", "db"} <= set(SERVICES)
    assert SERVICES["db"]["image"] == "pgvector/pgvector:pg16"
    for name in APP_SERVICES:
        assert SERVICES[name]["build"] in (".", {"context": "."})
    assert re.search(r"^FROM python:3\.11-slim$", DOCKERFILE, flags=re.MULTILINE)


def test_web_serves_the_wsgi_app_with_gunicorn():
    cmd = " ".join(command("web"))
    assert "gunicorn demo_shop.wsgi" in cmd
    assert "manage.py migrate" in cmd  # before the server starts
    assert (REPO / "demo_shop" / "wsgi.py").is_file()


def test_worker_consumes_the_queue_the_app_sends_to(container_settings):
    cmd = command("worker")
    assert cmd[:4] == ["celery", "-A", "demo_shop", "worker"]
    assert cmd[cmd.index("-Q") + 1].split(",") == [container_settings["VISUAL_RECS"]["QUEUE"]]
    assert cmd[cmd.index("--concurrency") + 1] == "1"
    assert (REPO / "demo_shop" / "celery.py").is_file()


def test_every_variable_compose_sets_is_read_by_the_project(app_service):
    unread = set(environment(app_service)) - env_names_read_by_the_project()
    assert not unread, f"{app_service} sets variables nothing reads: {sorted(unread)}"


def test_the_settings_under_the_compose_environment(container_settings):
    database = container_settings["DATABASES"]["default"]
    db_env = SERVICES["db"]["environment"]
    assert database["ENGINE"] == "django.db.backends.postgresql"
    assert (database["HOST"], database["PORT"]) == ("db", 5432)
    assert (database["NAME"], database["USER"], database["PASSWORD"]) == (
        db_env["POSTGRES_DB"], db_env["POSTGRES_USER"], db_env["POSTGRES_PASSWORD"]
    )
    broker = urlsplit(container_settings["CELERY_BROKER_URL"])
    assert (broker.scheme, broker.hostname) == ("redis", "redis")
    assert container_settings["CELERY_TASK_ALWAYS_EAGER"] is False  # the worker does the work
    assert "localhost" in container_settings["ALLOWED_HOSTS"]  # the health check's and the browser's host
    assert container_settings["SECRET_KEY"] != "demo-only-not-secret"


def test_media_and_weights_are_shared_volumes_at_the_configured_paths(app_service, container_settings):
    declared = set(COMPOSE["volumes"])
    service_mounts = mounts(app_service)
    media_root = str(container_settings["MEDIA_ROOT"])
    weights_dir = environment(app_service)["VISUAL_RECS_CACHE_DIR"]
    # The worker reads the photos the web process stored, with the weights baked into the image.
    assert service_mounts.get(media_root) in declared
    assert service_mounts.get(weights_dir) in declared
    assert weights_dir == dockerfile_env()["VISUAL_RECS_CACHE_DIR"] == "/opt/visual_recs/weights"


def test_health_checks_and_start_order():
    for name in ("db", "redis", "web", "worker"):
        assert SERVICES[name]["healthcheck"]["test"], name
    assert "pg_isready" in " ".join(SERVICES["db"]["healthcheck"]["test"])
    assert "ping" in SERVICES["redis"]["healthcheck"]["test"]
    for name in APP_SERVICES:
        depends = SERVICES[name]["depends_on"]
        assert {"db", "redis"} <= set(depends)
        for target, condition in depends.items():
            assert condition == {"condition": "service_healthy"}, (name, target)
            assert "healthcheck" in SERVICES[target]


def test_the_image_bakes_the_weights_with_npm_and_drops_npm():
    assert "apt-get install -y --no-install-recommends nodejs npm" in DOCKERFILE
    fetch = DOCKERFILE.index("python manage.py visual_recs_fetch_weights")
    assert DOCKERFILE.index("apt-get purge -y --auto-remove nodejs npm") > fetch
    pip = re.search(r'pip install "\.\[([\w,]+)\]"', DOCKERFILE)
    # PostgreSQL driver, gunicorn + dj-database-url, and the REST API the pages link to.
    assert pip and {"postgres", "demo", "api"} <= set(pip[1].split(","))


def test_the_documented_seed_step_finds_the_catalog():
    header = (REPO / "docker-compose.yml").read_text().split("\n\n")[0]
    seed = re.search(r"docker compose run --rm web (python manage\.py demo_setup .*)", header)
    assert seed, "the compose file documents its seed step"
    args = shlex.split(seed[1])
    catalog_dir = args[args.index("--catalog-dir") + 1]
    assert catalog_dir in mounts("web") and "--queue" in args
    assert (REPO / "demo_shop/shop/management/commands/demo_setup.py").is_file()

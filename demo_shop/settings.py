"""Settings of the demo shop, read from the environment where a deployer expects them.

- DATABASE_URL       default: SQLite at var/demo.sqlite3
- CELERY_BROKER_URL  unset: tasks run eagerly in the web process (no Redis needed)
- MEDIA_ROOT         default: var/media
- DJANGO_SECRET_KEY  required unless DJANGO_DEBUG=1 (then a random key per process; `make
  demo` keeps one in var/secret_key so sessions outlive a restart)
- DJANGO_DEBUG       "1": debug pages and a throwaway key, for a local demo only (default off)
- DJANGO_ALLOWED_HOSTS  comma-separated (default 127.0.0.1,localhost)
- DJANGO_HTTPS       "1": served behind a TLS proxy that sets X-Forwarded-Proto: HTTPS
  redirect, secure cookies, HSTS (default off, so the compose stack works on plain http)
- DJANGO_HSTS_SECONDS, DJANGO_HSTS_INCLUDE_SUBDOMAINS, DJANGO_HSTS_PRELOAD  with DJANGO_HTTPS=1
  (default 3600 seconds, the other two off: see docs/deploy.md before raising them)
- DJANGO_CACHE_URL   redis://...: the cache shared by the web processes (search throttle counts);
  unset: a memory cache per process
- DJANGO_NUM_PROXIES  how many proxies stand in front of Django, each overwriting or appending
  X-Forwarded-For (DRF's NUM_PROXIES: the search throttle counts the address they report);
  "1" in the compose stack, behind its nginx. Unset: none, the client is REMOTE_ADDR
- VISUAL_RECS_CACHE_DIR  where the ResNet50 weights are built (default ~/.cache/visual_recs)
- VISUAL_RECS_INDEX  "pgvector": nearest neighbours in PostgreSQL with pgvector (the compose
  stack); unset: the embedded exact index
"""

import os
from pathlib import Path

import dj_database_url
import django
from django.core.exceptions import ImproperlyConfigured
from django.core.management.utils import get_random_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"
VAR_DIR.mkdir(exist_ok=True)  # the default SQLite database lives here, and a fresh clone has no var/

DEBUG = os.environ.get("DJANGO_DEBUG", "0") == "1"
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "Set DJANGO_SECRET_KEY (e.g. the output of python -c 'import secrets; print(secrets.token_urlsafe(50))'): "
            "the demo shop has no default secret key outside a local DJANGO_DEBUG=1 run."
        )
    # Local and DEBUG only: a key nobody can know, at the price of sessions that end with the process.
    SECRET_KEY = get_random_secret_key()
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

# Behind a TLS-terminating proxy (DJANGO_HTTPS=1) everything goes over https. Off by default so
# the compose stack answers on http://127.0.0.1:8000; docs/deploy.md has the trade-off.
HTTPS = os.environ.get("DJANGO_HTTPS", "0") == "1"
if HTTPS:
    # Trusted only because the proxy overwrites the header; never expose gunicorn directly.
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", "3600"))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = os.environ.get("DJANGO_HSTS_INCLUDE_SUBDOMAINS", "0") == "1"
    SECURE_HSTS_PRELOAD = os.environ.get("DJANGO_HSTS_PRELOAD", "0") == "1"

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "visual_recs",
    "visual_recs.contrib.catalog",  # the bundled Product, its admin and the CSV import
    "demo_shop.shop",
]

MIDDLEWARE = [
    # First: a body declared larger than the largest photo upload is answered 413 before any
    # middleware below reads it (CsrfViewMiddleware reads a POST's form, files spooled to disk).
    "visual_recs.middleware.RequestSizeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    # The CSS without DEBUG (gunicorn in compose): collected into STATIC_ROOT by the Dockerfile.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # The anonymous visitor id of an A/B split; it sets no cookie while no EXPERIMENT is configured.
    "visual_recs.middleware.VisitorMiddleware",
]

ROOT_URLCONF = "demo_shop.urls"
WSGI_APPLICATION = "demo_shop.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'demo.sqlite3'}", conn_max_age=60
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Writers take SQLite's write lock when their transaction begins and wait for each other;
    # with the default (deferred) a transaction that read first fails with "database is locked".
    # transaction_mode is new in Django 5.1; on older ones such a task fails and is retried.
    DATABASES["default"]["OPTIONS"] = {"timeout": 30}
    if django.VERSION >= (5, 1):
        DATABASES["default"]["OPTIONS"]["transaction_mode"] = "IMMEDIATE"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# Unset: each process has its own memory cache, fine for `make demo`. Several web processes
# (gunicorn) need one shared cache, or the search throttle counts per process.
if os.environ.get("DJANGO_CACHE_URL"):
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": os.environ["DJANGO_CACHE_URL"]}
    }

# The admin's sign-in: after 5 failures from one address (an IPv6 /64), or 20 for one username,
# within 15 minutes, sign-ins there are refused before any password is checked, until the failures
# leave the window (demo_shop/shop/sign_in.py; docs/deploy.md). Counted in the cache above.
AUTHENTICATION_BACKENDS = [
    "demo_shop.shop.sign_in.SignInLockoutBackend",  # first: it refuses before the password is hashed
    "django.contrib.auth.backends.ModelBackend",
]
SIGN_IN_LOCKOUT = {"FAILURES_PER_ADDRESS": 5, "FAILURES_PER_USERNAME": 20, "WINDOW_SECONDS": 15 * 60}

# Behind proxies that report the client in X-Forwarded-For (the compose stack's nginx: 1), the
# search throttle, the events' flood limit and the sign-in lockout count that address; with
# none, REMOTE_ADDR.
# Never more than the proxies a request must pass, or a client's own header would be trusted.
REST_FRAMEWORK = {"NUM_PROXIES": int(os.environ["DJANGO_NUM_PROXIES"])} if os.environ.get("DJANGO_NUM_PROXIES") else {}

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", VAR_DIR / "media"))

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# Unset broker: the embedded default, tasks run in-process right after the save commits.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# One ResNet50 per worker process; a worker does one batch at a time and TensorFlow uses the cores.
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A worker that dies (killed, out of memory, the machine lost) leaves its batch unacknowledged;
# Redis gives it to another worker after this many seconds (Celery's default: an hour). Longer
# than any one batch takes, or a slow batch would run twice (harmless, but wasted).
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 900}
CELERY_BEAT_SCHEDULE = {
    "visual-recs-sweep": {"task": "visual_recs.tasks.sweep", "schedule": 300.0, "options": {"queue": "visual_recs"}},
}

VISUAL_RECS = {
    # The bundled Product, by gender, learning from its type and colour (demo_shop/shop/visual.py).
    "MODELS": {"products": "demo_shop.shop.visual.DemoProducts"},
    # The network's features of the photo and of its mirror image, and the colour of the
    # product's own pixels: what the fit learns from (bench/relevance.py).
    # The fast extractor in FP32: TensorFlow's vectors exactly, which bench/relevance.py's
    # figures were measured with. {"precision": "int8"} is 1.8x faster still, with 0.91 of the
    # lists (bench/extract.py, README "Faster extraction"); demo_setup would calibrate it.
    "EXTRACTOR": {
        "BACKEND": "visual_recs.backends.fast.FastResNet50Extractor",
        "OPTIONS": {"flip_average": True, "colour": True},
    },
    "NEIGHBOURS": 20,
    "QUEUE": "visual_recs",
    # Impressions and clicks of the strip, for the admin's "Recommendation performance" (docs/measurement.md).
    "EVENTS": True,
}
if os.environ.get("VISUAL_RECS_INDEX") == "pgvector":
    # 2,048 network features + 242 colour bins; a fit's shorter vectors are padded to it.
    VISUAL_RECS["INDEX"] = {
        "BACKEND": "visual_recs.backends.pgvector.PgvectorIndex",
        "OPTIONS": {"dimensions": 2290, "ef_search": 100},
    }

ABSOLUTE_URL_OVERRIDES = {"visual_recs_catalog.product": lambda product: f"/products/{product.pk}/"}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"visual_recs": {"handlers": ["console"], "level": "INFO"}},
}

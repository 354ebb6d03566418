"""The index contract (``visual_recs.testing.BackendTests``) run against every index backend.

Each backend is built from its class and options, never from the process's configured
backend. The pgvector class needs PostgreSQL with the ``vector`` extension: on any other
database its tests skip, saying so; ``make test-pgvector`` runs them. ``MemoryIndex``, a toy
written only against ``BaseIndex``, shows that a backend from outside the app can use the mixin.
"""

from __future__ import annotations

import importlib.util

import pytest
from django.conf import settings
from django.db import connection

from tests.memory_index import MemoryIndex
from visual_recs.backends.base import BaseIndex
from visual_recs.testing import BackendTests

PGVECTOR = "visual_recs.backends.pgvector.PgvectorIndex"


def _pgvector_missing() -> str | None:
    """Why the pgvector backend cannot be tested against this database, or None when it can."""
    if connection.vendor != "postgresql":
        return "pgvector needs PostgreSQL; `make test-pgvector` runs this pass"
    if importlib.util.find_spec("pgvector") is None:
        return "the pgvector package is not installed (pip extra [pgvector]); `make test-pgvector` runs this pass"
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'")
        if cursor.fetchone() is None:
            return "this PostgreSQL lacks the vector extension; `make test-pgvector` runs this pass"
    return None


class TestExactIndex(BackendTests):
    def make_index(self) -> BaseIndex:
        from visual_recs.backends.indexes import ExactIndex

        return ExactIndex()


class TestPgvectorIndex(BackendTests):
    def make_index(self) -> BaseIndex:
        reason = _pgvector_missing()
        if reason:
            pytest.skip(reason)
        from visual_recs.backends.pgvector import PgvectorIndex

        configured = getattr(settings, "VISUAL_RECS", {}).get("INDEX", {})
        options = configured.get("OPTIONS", {}) if configured.get("BACKEND") == PGVECTOR else {}
        return PgvectorIndex(**options)


class TestMemoryIndex(BackendTests):
    def make_index(self) -> BaseIndex:
        return MemoryIndex()

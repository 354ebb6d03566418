"""Faults with real processes: what a killed worker, a lost broker or a lost database connection loses.

    .venv/bin/python -m bench.faults [--case NAME] [--json PATH] [--products N] [--seed 0]

Each case starts real processes: Celery workers (``celery -A demo_shop.celery worker``, the
ResNet50 extractor with the real weights), a private ``redis-server`` on a free port that the
case may stop and start again (the machine's Redis on 6379 is never touched), and for the
PostgreSQL cases a new database on ``FAULTS_POSTGRES_URL`` (default
``postgres://postgres@127.0.0.1:5432/postgres``'s server), dropped at the end. The products are
the sample catalog's (``CATALOG_DIR``), their photos read in place. The settings are
``bench/faults_settings.py``: the demo shop's, with batches of 4 photos and a broker that gives
an unacknowledged message back after ``VISUAL_RECS_FAULTS_VISIBILITY`` seconds (30).

Cases (``--case``; without it every case runs, each in a process of its own):

- ``sigkill-worker``: N products queued as ``index_batch`` tasks of N/3 to a prefork worker
  (``--concurrency 1``); once it has committed its first vectors, SIGKILL of its process group
  (parent and pool child, as when a machine dies), then a new worker. The killed batch comes
  back through ``acks_late`` once the visibility timeout has passed.
- ``sigkill-pool-child``: the same, but only the pool child is killed (as the OOM killer picks
  the largest process); the parent gives the batch back at once (``reject_on_worker_lost``)
  and forks a new child.
- ``redis-restart``: N saves of new products through the real signals, one every 0.2 s;
  Redis is stopped (its queue lost: no persistence) after 30% of them and started again
  after 70%. Each save's wall time is measured; then the sweep runs on the worker.
- ``db-killed`` (PostgreSQL): one ``index_batch`` task of N products; while the worker is
  repairing the neighbour lists (its connection is inside a transaction that touched
  ``visual_recs_similaritem``), a second connection terminates its backend, twice. The task
  retries (``MAX_ATTEMPTS`` 3, 5 s then 10 s apart).
- ``two-workers`` (PostgreSQL): two solo workers; a driver saves N products, lets them be
  indexed, then makes 4N random changes (photo, gender, hidden, shown, deleted, re-created
  under the same key), one every 50 ms on average, so that both workers are busy with the
  same products at once. ``--seed`` picks the changes.

After the queue has drained, every case checks the same things against the database: every
product with a photo has one ``ready`` vector of its current photo (sha256), partition and
visibility; deleted products have no vector, no index entry and no place in a list; the index
holds exactly the stored vectors; and every stored neighbour list equals the list computed by
brute force over the stored vectors (the ``NEIGHBOURS`` nearest shown products of the
partition, ties by id). Anything else is counted as lost, and a case whose fault did not happen
as planned (the kill missed the batch, no connection was caught) says so. The run ends with a
markdown table for the README and exits 1 if anything was lost or missed. Each case keeps its
worker logs in the directory it prints.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import re
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from bench.common import CATALOG_DIR, REPO, catalog_rows, load_catalog, product_of
from tests.processes import stop, wait_for

QUEUE = "visual_recs"
WORKER_APP = "visual-recs-faults-worker"  # the workers' PostgreSQL application_name
POSTGRES_URL = os.environ.get("FAULTS_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
VISIBILITY_TIMEOUT = int(os.environ.get("VISUAL_RECS_FAULTS_VISIBILITY", "30"))
SAVE_INTERVAL = 0.2  # seconds between the redis-restart case's saves (a busy shop's back office)
OPERATION_INTERVAL = 0.05  # mean seconds between the two-workers case's changes
#: How long a case may wait for the workers to finish what they were given.
DRAIN_TIMEOUT = 300


# --- processes ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    """A private redis-server on a free port, without persistence: stopping it loses its queue."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self):
        import redis

        return redis.Redis(port=self.port, socket_timeout=2)

    def answers(self) -> bool:
        import redis

        try:
            return bool(self.client().ping())
        except redis.ConnectionError:
            return False

    def start(self) -> None:
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
        ]
        with open(self.workdir / "redis.log", "a") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_for(self.answers, timeout=20, what=f"redis-server on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop(self.process)


class Worker:
    """A real Celery worker process on the app's queue, its log in the run's directory."""

    def __init__(self, name: str, workdir: Path, *, pool: str = "solo", env: dict[str, str] | None = None) -> None:
        self.hostname = f"{name}@faults"
        self.pool = pool
        self.log_path = workdir / f"worker-{name}.log"
        self.env = {**os.environ, **(env or {})}
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = [
            sys.executable, "-m", "celery", "-A", "demo_shop.celery", "worker", "-Q", QUEUE,
            "--pool", self.pool, "--concurrency", "1", "--hostname", self.hostname, "--loglevel", "INFO",
            "--without-gossip", "--without-mingle", "--without-heartbeat",
        ]
        with open(self.log_path, "a") as log:
            # A session of its own: a kill of its process group takes the worker and its pool, nothing else.
            self.process = subprocess.Popen(
                command, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def wait_ready(self) -> None:
        from celery import current_app

        wait_for(
            lambda: current_app.control.ping(destination=[self.hostname], timeout=0.5),
            timeout=120,
            what=f"worker {self.hostname} to answer a ping",
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def pool_child(self) -> int:
        """The pid of a prefork worker's one pool process."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        if len(children) != 1:
            raise RuntimeError(f"expected one pool process under worker {self.pid}, found {children}")
        return int(children[0])

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop(self.process)


@contextmanager
def stopped_at_the_end(*workers: Worker) -> Iterator[None]:
    """Stop whichever of ``workers`` still run when the block ends, whatever happened in it."""
    try:
        yield
    finally:
        for worker in workers:
            worker.stop()


def gone(pid: int) -> bool:
    """Whether process ``pid`` has stopped running (exited, or a zombie not yet reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return True
    return state in ("Z", "X")


def wait_until_drained(redis_server: RedisServer, *, timeout: float = DRAIN_TIMEOUT) -> None:
    """Wait until the queue is empty and no worker holds a message, on two looks a second apart.

    A message a worker has taken stays in kombu's ``unacked`` hash until it is acknowledged
    (or given back), including a killed worker's and a retry waiting for its countdown.
    """
    client = redis_server.client()
    looks: list[bool] = []

    def drained_twice() -> bool:
        looks.append(client.llen(QUEUE) == 0 and client.hlen("unacked") == 0)
        return looks[-2:] == [True, True]

    wait_for(drained_twice, timeout=timeout, interval=1, what="the workers to finish the queue")


class QueueFailures(logging.Handler):
    """Counts the saves whose task could not be sent (``visual_recs.queue`` warns once for each)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


# --- set-up ------------------------------------------------------------------------------


def setup_django(database_url: str, broker_url: str) -> None:
    """Django in this process with the settings its workers get (they inherit this environment)."""
    os.environ.update(
        DJANGO_SETTINGS_MODULE="bench.faults_settings",
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=broker_url,
        MEDIA_ROOT=str(CATALOG_DIR),
        VISUAL_RECS_FAULTS_VISIBILITY=str(VISIBILITY_TIMEOUT),
    )
    os.environ.setdefault("DJANGO_SECRET_KEY", secrets.token_urlsafe(50))
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def open_database(engine: str, workdir: Path):
    """A fresh database for one case: (DATABASE_URL, a function that drops it)."""
    if engine == "sqlite":
        return f"sqlite:///{workdir / 'faults.sqlite3'}", lambda: None
    import psycopg

    name = f"visual_recs_faults_{os.getpid()}"
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")

    def drop() -> None:
        from django.db import connections

        connections.close_all()
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    return urlunsplit(urlsplit(POSTGRES_URL)._replace(path=f"/{name}")), drop


def spread_rows(count: int) -> list[dict[str, str]]:
    """``count`` catalog rows taken evenly through the file (it is grouped by gender)."""
    rows = catalog_rows()
    step = len(rows) / count
    return [rows[int(i * step)] for i in range(count)]


# --- what was lost -----------------------------------------------------------------------


def audit(known_ids: set[str]) -> dict:
    """Compare what the workers left with the products as they are now; every count but ``checked_*`` is a loss.

    ``known_ids``: every product id the case used, deleted ones included.
    """
    import numpy as np

    from tests.lists import stored_lists, true_lists
    from visual_recs import registry
    from visual_recs.backends import get_index
    from visual_recs.conf import app_settings
    from visual_recs.indexing import current_collection, photo_sha256
    from visual_recs.contrib.catalog.models import Product
    from visual_recs.models import FeatureVector, IndexStatus

    products_model = registry.get("products")
    products = {str(product.pk): product for product in Product.objects.all()}
    rows = {row.object_id: row for row in FeatureVector.objects.filter(content_type=products_model.content_type)}
    ready = {
        object_id: row
        for object_id, row in rows.items()
        if object_id in products and row.status == IndexStatus.READY
    }
    entries = {entry.object_id: entry for entry in get_index().entries(current_collection(products_model))}
    stored = stored_lists()
    truth = true_lists(
        {object_id: (row.partition, row.listed, row.as_array()) for object_id, row in ready.items()},
        app_settings.NEIGHBOURS,
    )
    named = {object_id for source, targets in stored.items() for object_id in [source, *targets]}

    def disagrees(object_id: str) -> bool:
        entry, row = entries[object_id], ready[object_id]
        return (entry.partition, entry.shown) != (row.partition, row.listed) or not np.array_equal(
            entry.vector, row.as_array()
        )

    found = {
        "not_ready": [pk for pk, product in products.items() if product.image and pk not in ready],
        "old_photo": [pk for pk, row in ready.items() if row.image_sha256 != photo_sha256(products[pk].image)],
        "wrong_place": [
            pk for pk, row in ready.items() if (row.partition, row.listed) != (products[pk].gender, products[pk].is_active)
        ],
        "vectors_of_deleted": sorted(set(rows) - set(products)),
        "index_entries_of_deleted": sorted(set(entries) - set(products)),
        "listed_deleted": sorted(named - set(products)),
        "index_missing": sorted(set(ready) - set(entries)),
        "index_disagrees": sorted(pk for pk in set(ready) & set(entries) if disagrees(pk)),
        "lists_wrong": sorted(pk for pk in set(truth) | set(stored) if truth.get(pk) != stored.get(pk)),
        "lists_unfinished": sorted(pk for pk, row in ready.items() if row.list_radius is None),
    }
    result = {name: len(ids) for name, ids in found.items()}
    # What became of the products left without a ready vector: no row at all, or its status.
    result["not_ready_rows"] = {pk: rows[pk].status if pk in rows else None for pk in found["not_ready"][:20]}
    result["examples"] = {name: ids[:5] for name, ids in found.items() if ids}
    result["lost"] = sum(len(ids) for ids in found.values())
    result["checked_products"] = len(products)
    result["checked_deleted"] = len(known_ids - set(products))
    result["checked_lists"] = len(truth)
    return result


def describe_audit(checks: dict) -> str:
    losses = [f"{checks[name]} {name.replace('_', ' ')}" for name in checks["examples"]]
    return ", ".join(losses) if losses else "nothing"


def ready_summary(checks: dict) -> str:
    products = checks["checked_products"]
    return (
        f"{products - checks['not_ready']} of {products} products ready, "
        f"{checks['checked_lists'] - checks['lists_wrong']} of {checks['checked_lists']} lists equal brute force"
    )


def succeeded_tasks(log: str) -> list[str]:
    """The return values of the ``index_batch`` tasks a worker's log says succeeded."""
    return re.findall(r"Task visual_recs\.tasks\.index_batch\[[^\]]+\] succeeded in [\d.]+s: '([^']*)'", log)


def indexed_in(results: list[str]) -> int:
    return sum(int(re.match(r"(\d+) indexed", result).group(1)) for result in results)


def ready_count() -> int:
    from visual_recs.models import FeatureVector

    return FeatureVector.objects.filter(status="ready").count()


# --- the cases ---------------------------------------------------------------------------


def sigkill(kill: str, products: int, workdir: Path, redis_server: RedisServer) -> dict:
    """SIGKILL mid-batch of a prefork worker (``--concurrency 1``).

    ``kill="worker"``: its whole process group, parent and pool child at once, as when a machine
    or a container dies; a new worker is started. ``kill="child"``: its pool child only, as the
    kernel's OOM killer picks the largest process; the parent stays.
    """
    from visual_recs import queue
    from visual_recs.contrib.catalog.models import Product

    rows = spread_rows(products)
    load_catalog(rows=rows)
    ids = {row["ProductId"] for row in rows}
    task_size = math.ceil(products / 3)
    batches = math.ceil(products / task_size)
    first, second = Worker("first", workdir, pool="prefork"), Worker("second", workdir, pool="prefork")
    with stopped_at_the_end(first, second):
        first.start()
        first.wait_ready()
        if queue.enqueue_indexing(Product, sorted(ids, key=int), batch_size=task_size) != products:
            raise RuntimeError("the batches could not be queued")
        wait_for(lambda: ready_count() > 0, timeout=300, interval=0.05, what="the first committed vectors")
        child = first.pool_child()
        if kill == "worker":
            victims = [first.pid, child]
            os.killpg(first.pid, signal.SIGKILL)
        else:
            victims = [child]
            os.kill(child, signal.SIGKILL)
        killed_at = time.monotonic()
        wait_for(lambda: all(map(gone, victims)), timeout=10, interval=0.05, what=f"processes {victims} to die")
        # Counted once the processes are dead: no commit can land after these.
        ready_at_kill = ready_count()
        finished_at_kill = len(succeeded_tasks(first.log()))
        if kill == "worker":
            second.start()
        wait_until_drained(redis_server)
        recovered_s = time.monotonic() - killed_at
    logs = [first.log()] + ([second.log()] if kill == "worker" else [])
    results = [result for log in logs for result in succeeded_tasks(log)]
    received = [task_id for log in logs for task_id in re.findall(r"Task visual_recs\.tasks\.index_batch\[([^\]]+)\] received", log)]
    redelivered = len(received) - len(set(received))
    checks = audit(ids)
    mid_batch = finished_at_kill == 0 and 0 < ready_at_kill < task_size
    # Each product's vector written exactly once: before the kill, or by one task after it.
    written = ready_at_kill + indexed_in(results)
    unmet = [
        *([] if mid_batch else ["the kill did not land inside the first batch"]),
        *([] if written == products else [f"{written} vectors written for {products} products"]),
    ]
    if kill == "worker":
        fault = "SIGKILL of a worker (parent and pool child) mid-batch"
        how = f"a new worker; the batch back after the {VISIBILITY_TIMEOUT} s visibility timeout (`acks_late`)"
    else:
        fault = "SIGKILL of a prefork worker's pool child mid-batch"
        how = "the parent gives the batch back at once (`reject_on_worker_lost`) and forks a new child"
    return {
        "fault": fault,
        "tried": f"{products} products in {batches} `index_batch` tasks of "
        f"{task_size}, real ResNet50; killed with {ready_at_kill} vectors committed and "
        f"{finished_at_kill} tasks finished; {how}",
        "result": f"{'mid-batch' if mid_batch else 'NOT mid-batch'}; {redelivered} task redelivered; queue drained "
        f"{recovered_s:.0f} s after the kill; {ready_summary(checks)}; vectors written {written} times",
        "lost": checks["lost"],
        "unmet": unmet,
        "lost_detail": describe_audit(checks),
        "products": products,
        "task_size": task_size,
        "ready_at_kill": ready_at_kill,
        "tasks_finished_at_kill": finished_at_kill,
        "mid_batch": mid_batch,
        "tasks_redelivered": redelivered,
        "vectors_written": written,
        "recovered_s": recovered_s,
        "visibility_timeout_s": VISIBILITY_TIMEOUT,
        "checks": checks,
    }


def redis_restart(saves: int, workdir: Path, redis_server: RedisServer) -> dict:
    """Saves through the signals while the broker goes away and comes back; then the sweep."""
    from visual_recs import queue, tasks

    rows = spread_rows(saves)
    worker = Worker("worker", workdir)
    failures = QueueFailures()
    logging.getLogger("visual_recs.queue").addHandler(failures)
    down_from, down_until = saves * 3 // 10, saves * 7 // 10
    timings: list[tuple[float, bool, bool]] = []  # (seconds, broker down, task sent)
    try:
        worker.start()
        worker.wait_ready()
        for i, row in enumerate(rows):
            if i == down_from:
                redis_server.stop()
            elif i == down_until:
                redis_server.start()
            failed_before = failures.count
            started = time.perf_counter()
            product_of(row).save()  # autocommit: the signal's on_commit sends the task inside the save
            timings.append((time.perf_counter() - started, down_from <= i < down_until, failures.count == failed_before))
            time.sleep(SAVE_INTERVAL)
        worker.wait_ready()  # reconnected to the new Redis
        wait_until_drained(redis_server)
        waiting = saves - ready_count()
        if not queue.enqueue(tasks.sweep):
            raise RuntimeError("the sweep could not be queued")
        wait_until_drained(redis_server)
    finally:
        logging.getLogger("visual_recs.queue").removeHandler(failures)
        worker.stop()
    seconds = [s for s, _, _ in timings]
    unsent_down = sum(not sent for _, down, sent in timings if down)
    unsent_up = sum(not sent for _, down, sent in timings if not down)
    checks = audit({row["ProductId"] for row in rows})
    slow = sum(s >= 1 for s in seconds)
    lost_with_redis = waiting - unsent_down  # queued before the stop, gone with Redis' memory
    return {
        "fault": "Redis stopped (queue lost) and restarted during saves",
        "tried": f"{saves} saves of new products through the signals, one every {SAVE_INTERVAL} s; Redis down "
        f"for saves {down_from + 1}-{down_until}; then the sweep on the worker",
        "result": f"save max {max(seconds) * 1000:.0f} ms, median {statistics.median(seconds) * 1000:.0f} ms "
        f"({slow} of {saves} took 1 s or more); {unsent_down} saves could not queue while Redis was down, "
        f"{unsent_up} while it was up; {waiting} products waiting for the sweep ({lost_with_redis} of their tasks "
        f"queued but lost with Redis' memory); after the sweep {ready_summary(checks)}",
        "lost": checks["lost"],
        "unmet": [f"{slow} saves took 1 s or more"] if slow else [],
        "lost_detail": describe_audit(checks),
        "saves": saves,
        "save_max_ms": max(seconds) * 1000,
        "save_median_ms": statistics.median(seconds) * 1000,
        "save_median_down_ms": statistics.median([s for s, down, _ in timings if down]) * 1000,
        "saves_over_1s": slow,
        "unsent_while_down": unsent_down,
        "unsent_while_up": unsent_up,
        "waiting_for_sweep": waiting,
        "tasks_lost_with_redis": lost_with_redis,
        "checks": checks,
    }


class BackendKiller(threading.Thread):
    """Terminates the workers' PostgreSQL backends caught inside a transaction that touched the lists.

    From a connection of its own, it polls ``pg_stat_activity`` for a backend of the workers'
    ``application_name`` with an open transaction whose current (or last) statement names the
    neighbour lists' table, and terminates it; ``kills`` times, then it stops.
    """

    def __init__(self, database_url: str, kills: int) -> None:
        super().__init__(daemon=True)
        self.database_url, self.kills = database_url, kills
        self.killed: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        import psycopg

        with psycopg.connect(self.database_url, autocommit=True) as connection:
            while len(self.killed) < self.kills and not self.done.is_set():
                rows = connection.execute(
                    "SELECT left(query, 60) FROM pg_stat_activity WHERE application_name = %s "
                    "AND xact_start IS NOT NULL AND query ILIKE %s AND pg_terminate_backend(pid)",
                    [WORKER_APP, "%visual_recs_similaritem%"],
                ).fetchall()
                self.killed += [query for (query,) in rows]
                time.sleep(0.01)


def db_killed(products: int, workdir: Path, redis_server: RedisServer, database_url: str, kills: int = 2) -> dict:
    """The worker's database connection terminated while it repairs lists; the task retries."""
    from visual_recs import queue
    from visual_recs.contrib.catalog.models import Product

    rows = spread_rows(products)
    load_catalog(rows=rows)
    ids = {row["ProductId"] for row in rows}
    worker = Worker("worker", workdir, env={"PGAPPNAME": WORKER_APP})
    killer = BackendKiller(database_url, kills)
    with stopped_at_the_end(worker):
        worker.start()
        worker.wait_ready()
        killer.start()
        try:
            if queue.enqueue_indexing(Product, sorted(ids, key=int), batch_size=products) != products:
                raise RuntimeError("the batch could not be queued")
            wait_until_drained(redis_server)
        finally:
            killer.done.set()
            killer.join()
    log = worker.log()
    retries = re.findall(r"Retry in \d+s: (\w+)", log)
    runs = succeeded_tasks(log)
    checks = audit(ids)
    return {
        "fault": "PostgreSQL connection terminated during a list repair",
        "tried": f"one `index_batch` task of {products} products; `pg_terminate_backend` of the worker's connection "
        f"inside its repair transaction, up to {kills} times",
        "result": f"{len(killer.killed)} connections killed; {len(retries)} retries "
        f"({', '.join(sorted(set(retries))) or 'none'}); the run that finished: "
        f"'{runs[-1] if runs else 'none'}'; {ready_summary(checks)}",
        "lost": checks["lost"],
        "unmet": [] if killer.killed else ["no connection was caught inside a repair"],
        "lost_detail": describe_audit(checks),
        "products": products,
        "connections_killed": len(killer.killed),
        "killed_during": killer.killed,
        "retries": len(retries),
        "checks": checks,
    }


def two_workers(products: int, workdir: Path, redis_server: RedisServer, seed: int, operations: int) -> dict:
    """Two workers, one driver saving, re-photographing, moving, hiding, deleting the same products at random."""
    from visual_recs import queue, tasks
    from visual_recs.contrib.catalog.models import Product

    rng = random.Random(seed)
    rows = spread_rows(products * 3)
    start_rows, photos = rows[:: 3], [f"images/{row['Image']}" for row in rows]
    genders = sorted({row["Gender"] for row in rows})
    ids = {row["ProductId"] for row in start_rows}
    workers = [Worker(name, workdir) for name in ("one", "two")]
    done: dict[str, int] = {}
    with stopped_at_the_end(*workers), open(workdir / "operations.log", "w") as operations_log:
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.wait_ready()
        for row in start_rows:
            product_of(row).save()
        # Changes land while the workers are busy with earlier ones, not all queued before any runs.
        wait_until_drained(redis_server)
        by_id = {row["ProductId"]: row for row in start_rows}
        for _ in range(operations):
            pk = rng.choice(sorted(ids))
            product = Product.objects.filter(pk=pk).first()
            if product is None:
                action = "re-create"
                product_of(by_id[pk]).save()
            else:
                action = rng.choice(["photo", "photo", "move", "hide", "show", "delete"])
                if action == "delete":
                    product.delete()
                else:
                    if action == "photo":
                        product.image = rng.choice(photos)
                    elif action == "move":
                        product.gender = rng.choice([g for g in genders if g != product.gender])
                    else:
                        product.is_active = action == "show"
                    product.save()
            done[action] = done.get(action, 0) + 1
            operations_log.write(f"{datetime.now():%H:%M:%S.%f} {action} {pk}\n")
            time.sleep(rng.uniform(0, 2 * OPERATION_INTERVAL))
        wait_until_drained(redis_server)
        checks = audit(ids)
        after_sweep = None
        if checks["lost"]:
            # What the sweep (every few minutes in production) makes of it.
            if not queue.enqueue(tasks.sweep):
                raise RuntimeError("the sweep could not be queued")
            wait_until_drained(redis_server)
            after_sweep = audit(ids)
        logs = [worker.log() for worker in workers]
    per_worker = [len(re.findall(r"Task visual_recs\.tasks\.\w+\[[^\]]+\] received", log)) for log in logs]
    # What the tasks found: "superseded" (a newer photo came), "gone" (deleted since), "back" (saved again).
    outcomes: dict[str, int] = {}
    for outcome in re.findall(r"Task visual_recs\.tasks\.\w+\[[^\]]+\] succeeded in [\d.]+s: '(\w+)'", "".join(logs)):
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return {
        "fault": "two workers on the same products at once (PostgreSQL)",
        "tried": f"{products} products saved, then {operations} random changes, one every "
        f"{OPERATION_INTERVAL * 1000:.0f} ms on average "
        f"({', '.join(f'{n} {action}' for action, n in sorted(done.items()))}); tasks taken "
        f"{per_worker[0]} / {per_worker[1]} by the two workers; task outcomes: "
        f"{', '.join(f'{n} {outcome}' for outcome, n in sorted(outcomes.items()))}",
        "result": f"{checks['checked_products']} products left, {checks['checked_deleted']} deleted; "
        f"lost: {describe_audit(checks)}"
        + (f"; after the sweep: {describe_audit(after_sweep)}" if after_sweep else "")
        + f"; {ready_summary(checks)}",
        "lost": checks["lost"],
        "unmet": [],
        "lost_detail": describe_audit(checks),
        "products": products,
        "operations": operations,
        "actions": done,
        "tasks_per_worker": per_worker,
        "task_outcomes": outcomes,
        "checks": checks,
        "after_sweep": after_sweep,
    }


CASES = {
    # name: (database engine, default N)
    "sigkill-worker": ("sqlite", 150),
    "sigkill-pool-child": ("sqlite", 150),
    "redis-restart": ("sqlite", 100),
    "db-killed": ("postgres", 200),
    "two-workers": ("postgres", 40),
}


def run_case(name: str, products: int, seed: int) -> dict:
    """One case in this process: its own broker, database and workers, removed at the end."""
    engine, _ = CASES[name]
    workdir = Path(tempfile.mkdtemp(prefix=f"visual-recs-faults-{name}-"))
    redis_server = RedisServer(workdir)
    database_url, drop_database = open_database(engine, workdir)
    started = time.monotonic()
    try:
        redis_server.start()
        setup_django(database_url, redis_server.url)
        print(f"{name}: N={products}, {engine}, Redis on port {redis_server.port}, logs in {workdir}", flush=True)
        if name == "sigkill-worker":
            result = sigkill("worker", products, workdir, redis_server)
        elif name == "sigkill-pool-child":
            result = sigkill("child", products, workdir, redis_server)
        elif name == "redis-restart":
            result = redis_restart(products, workdir, redis_server)
        elif name == "db-killed":
            result = db_killed(products, workdir, redis_server, database_url)
        else:
            result = two_workers(products, workdir, redis_server, seed, operations=products * 4)
    finally:
        drop_database()
        redis_server.stop()
    result.update(case=name, engine=engine, seconds=time.monotonic() - started, logs=str(workdir))
    print(
        f"{name}: {result['tried']}\n  -> {result['result']}\n  lost: {result['lost']} ({result['lost_detail']})"
        + "".join(f"\n  UNMET: {text}" for text in result["unmet"])
        + f"\n  {result['seconds']:.0f} s",
        flush=True,
    )
    return result


def run_in_child(name: str, products: int | None, seed: int) -> dict:
    """One case in a process of its own (each needs its own Django settings: SQLite or PostgreSQL)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "case.json"
        command = [sys.executable, "-m", "bench.faults", "--case", name, "--json", str(out), "--seed", str(seed), "--no-table"]
        if products:
            command += ["--products", str(products)]
        done = subprocess.run(command, cwd=REPO)
        if not out.exists():
            raise RuntimeError(f"case {name} ended with status {done.returncode} and no result")
        return json.loads(out.read_text())[0]


def table(results: list[dict]) -> str:
    lines = ["| fault | what was tried | result | lost |", "| --- | --- | --- | --- |"]
    for result in results:
        unmet = "".join(f"; unmet: {text}" for text in result["unmet"])
        lines.append(f"| {result['fault']} | {result['tried']} | {result['result']} | **{result['lost']}**{unmet} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--case", choices=sorted(CASES), help="run one case (default: each, one process each)")
    parser.add_argument("--json", type=Path, help="write every case's counts to this file")
    parser.add_argument("--products", type=int, help="N of the case (each case's default otherwise)")
    parser.add_argument("--seed", type=int, default=0, help="the two-workers case's random changes")
    parser.add_argument("--no-table", action="store_true", help=argparse.SUPPRESS)  # a case run by the full run
    args = parser.parse_args()

    if args.case:
        results = [run_case(args.case, args.products or CASES[args.case][1], args.seed)]
    else:
        results = [run_in_child(name, args.products, args.seed) for name in CASES]
    if not args.no_table:
        print(table(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    failed = [result["case"] for result in results if result["lost"] or result["unmet"]]
    if failed:
        sys.exit(f"lost something or missed an expectation: {', '.join(failed)}")


if __name__ == "__main__":
    main()

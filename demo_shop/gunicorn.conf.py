"""gunicorn's settings for the demo shop: the compose stack, docs/deploy.md and bench/abuse.py all serve with this file.

    gunicorn -c demo_shop/gunicorn.conf.py demo_shop.wsgi

gunicorn stands behind nginx (deploy/nginx/): nginx reads each request's body whole before it
passes the request on, so a client that trickles a body waits in nginx, not in a thread here.
Only the front may reach gunicorn's port: gunicorn itself reads a body in the thread that
serves the request.

Command-line options override these (the benchmarks bind another port).
"""

from __future__ import annotations

import os

bind = "0.0.0.0:8000"
# Each worker process holds its own ResNet50 for search by photo once it has run one.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads rather than more processes, which would each hold a network of their own. There
# are more threads than the app's search slots (VISUAL_RECS["MAX_CONCURRENT_SEARCHES"], 2 per
# process, the excess answered 503 at once), so a flood of searches never takes every thread
# and product pages keep six per worker.
worker_class = "gthread"
threads = 8
# A worker compiles the network on its first search by photo; the timeout leaves room for a
# slow disk. It is not what protects from slow clients: nginx is.
timeout = 120
graceful_timeout = 30
# nginx opens a connection per request (HTTP/1.0 upstream): nothing to keep alive for long.
keepalive = 2
# Request line and headers: gunicorn's own limits (4094 bytes, 100 fields), stated here so a
# change is a decision. The body's limit is nginx's client_max_body_size and
# visual_recs.middleware.RequestSizeMiddleware.
limit_request_line = 4094
limit_request_fields = 100
accesslog = "-"

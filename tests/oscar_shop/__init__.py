"""The Oscar test shop, a project of its own (``settings``, ``urls``).

As a Django project's package does, it loads its Celery app, so that ``manage.py`` commands
(``visual_recs_reindex``) send their tasks through it to the worker's broker.
"""

from tests.celery_app import app as celery_app

__all__ = ["celery_app"]

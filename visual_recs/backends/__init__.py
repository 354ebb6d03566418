"""The configured backends, built once per process and dropped when ``VISUAL_RECS`` changes."""

from __future__ import annotations

import threading

from django.utils.module_loading import import_string

from ..conf import app_settings
from .base import BaseExtractor, BaseIndex

_lock = threading.Lock()
_instances: dict[str, object] = {}


def _build(config: dict) -> object:
    backend = import_string(config["BACKEND"])
    return backend(**config.get("OPTIONS", {}))


def _get(role: str, config: dict) -> object:
    if role not in _instances:
        with _lock:
            if role not in _instances:
                _instances[role] = _build(config)
    return _instances[role]


def get_extractor() -> BaseExtractor:
    """The process's extractor: its network loads once, on first use, and is shared by threads."""
    return _get("extractor", app_settings.EXTRACTOR)


def get_index() -> BaseIndex:
    """The process's nearest-neighbour index."""
    return _get("index", app_settings.INDEX)


def reset() -> None:
    """Forget the built backends (on a settings change); the next call builds them anew."""
    with _lock:
        _instances.clear()

"""The app's settings: one ``VISUAL_RECS`` dict, read live through ``app_settings``.

Nothing here is read at import time, so ``override_settings(VISUAL_RECS=...)`` just works;
what other modules cache from these settings is cleared on Django's ``setting_changed``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from django.conf import settings

# Nothing is indexed until the shop registers a model: the core has no product model of its own
# to default to (the bundled one is in the opt-in visual_recs.contrib.catalog).
DEFAULT_MODELS: dict[str, Any] = {}
# The fast extractor in FP32: TensorFlow's lists (bench/extract.py), more photos a second, a
# web process without TensorFlow, and nothing to ask of the shop (INT8 needs its photos).
DEFAULT_EXTRACTOR: dict[str, Any] = {
    "BACKEND": "visual_recs.backends.fast.FastResNet50Extractor",
    "OPTIONS": {},
}
#: What a multipart form may add around a photo (boundaries, part headers, the other fields).
FORM_OVERHEAD_BYTES = 64 * 1024
DEFAULT_INDEX: dict[str, Any] = {
    "BACKEND": "visual_recs.backends.indexes.ExactIndex",
    "OPTIONS": {},
}


class AppSettings:
    """One documented property per key of ``settings.VISUAL_RECS``."""

    def _get(self, key: str, default: Any) -> Any:
        return getattr(settings, "VISUAL_RECS", {}).get(key, default)

    @property
    def MODELS(self) -> dict[str, Any]:
        """Which host models are indexed: ``{key: ModelPhotos subclass or its dotted path}``.

        The key names the model in URLs and commands; everything else about the model (its
        photo, what is shown, its partition, what a fit learns from) is declared on the class,
        a subclass of ``visual_recs.registration.ModelPhotos`` (docs/configuration.md). Empty by
        default (system check ``visual_recs.W002`` says so); 0.x's dict of options per model is
        refused by ``visual_recs.E015``, whose hint is the class to write.
        """
        return self._get("MODELS", DEFAULT_MODELS)

    @property
    def EXTRACTOR(self) -> dict[str, Any]:
        """``{"BACKEND": dotted path, "OPTIONS": {...}}`` of the feature extractor."""
        return {**DEFAULT_EXTRACTOR, **self._get("EXTRACTOR", {})}

    @property
    def INDEX(self) -> dict[str, Any]:
        """``{"BACKEND": dotted path, "OPTIONS": {...}}`` of the nearest-neighbour index."""
        return {**DEFAULT_INDEX, **self._get("INDEX", {})}

    @property
    def COLOUR_WEIGHT(self) -> float:
        """Share of the colour part in "looks alike", next to the network's 1, for an extractor
        with ``colour`` on and no fit (a fit learns its own weighing)."""
        return float(self._get("COLOUR_WEIGHT", 0.1))

    @property
    def NEIGHBOURS(self) -> int:
        """Neighbours kept per product; pages show fewer, so filtered-out items leave room."""
        return int(self._get("NEIGHBOURS", 20))

    @property
    def EXCLUDE_DUPLICATE_PHOTOS(self) -> bool:
        """Leave out recommendations whose photo is byte-identical to one already on the page.

        That is the product's own photo (the same shot under another product id, distance 0)
        and, further down a list, a photo already shown for a nearer item. Compared by the
        photos' sha256, so a re-encoded or resized copy is not a duplicate here.
        """
        return bool(self._get("EXCLUDE_DUPLICATE_PHOTOS", True))

    @property
    def QUEUE(self) -> str:
        """Celery queue of the heavy work (extraction, neighbour lists)."""
        return self._get("QUEUE", "visual_recs")

    @property
    def MAX_IMAGE_BYTES(self) -> int:
        """Largest photo file read, in bytes; bigger ones fail with a clear reason."""
        return int(self._get("MAX_IMAGE_BYTES", 20 * 1024 * 1024))

    @property
    def MAX_REQUEST_BYTES(self) -> int:
        """Largest request body ``RequestSizeMiddleware`` lets in, by its declared ``Content-Length``.

        By default the largest photo upload: ``MAX_IMAGE_BYTES`` and a form around it.
        """
        value = self._get("MAX_REQUEST_BYTES", None)
        return int(value) if value is not None else self.MAX_IMAGE_BYTES + FORM_OVERHEAD_BYTES

    @property
    def MAX_IMAGE_PIXELS(self) -> int:
        """Largest photo accepted, in pixels (width x height), checked before decoding."""
        return int(self._get("MAX_IMAGE_PIXELS", 40_000_000))

    @property
    def UPLOAD_FORMATS(self) -> tuple[str, ...]:
        """Formats search by photo accepts, by Pillow's names (decided from the bytes, not the name)."""
        return tuple(self._get("UPLOAD_FORMATS", ("JPEG", "PNG", "WEBP", "GIF")))

    @property
    def MAX_UPLOAD_PIXELS(self) -> int:
        """Largest photo search by photo accepts, in pixels: lower than catalog photos', as anyone may send one."""
        return int(self._get("MAX_UPLOAD_PIXELS", 16_000_000))

    @property
    def MAX_CONCURRENT_SEARCHES(self) -> int:
        """Searches by photo one web process runs at once; more are refused at once (503), not queued.

        Each holds a decoded photo and a pass of the network: a bound on the memory and CPU a
        burst of uploads can take from a process that also serves pages.
        """
        return int(self._get("MAX_CONCURRENT_SEARCHES", 2))

    @property
    def MAX_ATTEMPTS(self) -> int:
        """Retries of a task that failed for a passing reason (database, storage), and attempts
        at a photo that failed before the sweep stops trying it."""
        return int(self._get("MAX_ATTEMPTS", 3))

    @property
    def EVENTS(self) -> bool:
        """Record impressions and clicks of the strip (opt-in): the page signs a token per card and
        a small script reports them to ``visual_recs:events`` (docs/measurement.md)."""
        return bool(self._get("EVENTS", False))

    @property
    def EVENT_TOKEN_MAX_AGE(self) -> int:
        """Seconds a card's event token is accepted after the page signed it; older ones are dropped."""
        return int(self._get("EVENT_TOKEN_MAX_AGE", 24 * 60 * 60))

    @property
    def EVENTS_RATE(self) -> int:
        """Events a minute accepted from one client address (an IPv6 /64 counts as one); the rest are dropped."""
        return int(self._get("EVENTS_RATE", 600))

    @property
    def EVENT_RETENTION_DAYS(self) -> int:
        """Days events are kept; the sweep deletes older ones, a bounded batch at a time."""
        return int(self._get("EVENT_RETENTION_DAYS", 90))

    @property
    def EXPERIMENT(self) -> dict[str, Any] | None:
        """An A/B split of the strip: ``{"name": str, "arms": {arm: options}}``, each arm's options
        being keyword arguments of ``indexing.recommendations``. None: no experiment. Checked by
        ``visual_recs.E018``; a malformed one is ignored at run time (``experiments.configured``)."""
        return self._get("EXPERIMENT", None)

    @property
    def WEIGHTS_CACHE_DIR(self) -> Path:
        """Where built weight files are kept: setting, else ``$VISUAL_RECS_CACHE_DIR``, else ``~/.cache/visual_recs``."""
        configured = self._get("WEIGHTS_CACHE_DIR", None) or os.environ.get("VISUAL_RECS_CACHE_DIR")
        if configured:
            return Path(configured)
        xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        return Path(xdg) / "visual_recs"


app_settings = AppSettings()

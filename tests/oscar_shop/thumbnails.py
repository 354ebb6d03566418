"""An Oscar thumbnailer that returns the original photo: the test shop installs no thumbnail library."""

from __future__ import annotations

from types import SimpleNamespace

from django.conf import settings
from oscar.core.thumbnails import AbstractThumbnailer


class OriginalImage(AbstractThumbnailer):
    def generate_thumbnail(self, source, **opts):
        # A stored file has a URL; Oscar's missing-image placeholder is a name under MEDIA_URL.
        url = getattr(source, "url", None) or f"{settings.MEDIA_URL}{source}"
        return SimpleNamespace(url=url)

    def delete_thumbnails(self, source):
        pass

from __future__ import annotations

from django.apps import AppConfig
from django.core.signals import setting_changed
from django.utils.translation import gettext_lazy as _


class VisualRecsConfig(AppConfig):
    name = "visual_recs"
    verbose_name = _("Visual recommendations")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
        from . import signals

        signals.connect()
        setting_changed.connect(_on_setting_changed, dispatch_uid="visual_recs_setting_changed")


def _on_setting_changed(setting: str, **kwargs) -> None:
    if setting != "VISUAL_RECS":
        return
    from . import backends, signals

    backends.reset()
    signals.connect()

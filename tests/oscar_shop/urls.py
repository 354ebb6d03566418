"""The Oscar test shop's URLs: Oscar's, the dashboard page of visual_recs, and (with DEBUG) the photos."""

from django.apps import apps
from django.conf import settings
from django.conf.urls.static import static
from django.urls import include, path

urlpatterns = [
    path("i18n/", include("django.conf.urls.i18n")),
    # The documented include (README, "django-oscar"): staff only, linked from the dashboard's menu.
    path("dashboard/visual-recs/", apps.get_app_config("visual_recs_oscar").urls),
    path("visual-recs/", include("visual_recs.urls")),  # the events endpoint (docs/measurement.md)
    path("", include(apps.get_app_config("oscar").urls[0])),
    *static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT),
]

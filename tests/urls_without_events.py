"""The test URLs without ``visual_recs.urls``: a shop that turned EVENTS on but did not include the endpoint."""

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/visual-recs/", include("visual_recs.api.urls")),
]

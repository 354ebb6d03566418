"""``path("visual-recs/", include("visual_recs.urls"))``; URL names are in the ``visual_recs`` namespace.

Only the events endpoint, a plain Django view: the REST API is ``visual_recs.api.urls``.
"""

from __future__ import annotations

from django.urls import path

from . import views

app_name = "visual_recs"

urlpatterns = [
    path("events/", views.record_events, name="events"),
]

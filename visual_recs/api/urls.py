"""``path("api/visual-recs/", include("visual_recs.api.urls"))``; URL names are in the ``visual_recs_api`` namespace."""

from __future__ import annotations

from django.urls import path
from drf_spectacular.views import SpectacularRedocView

from . import views

app_name = "visual_recs_api"

urlpatterns = [
    path("status/", views.IndexStatusView.as_view(), name="status"),
    path("schema/", views.SchemaView.as_view(), name="schema"),
    # The page loads ReDoc from a CDN: it needs the browser online (the schema itself does not).
    # schema=None: out of any schema, as SchemaView.
    path("schema/redoc/", SpectacularRedocView.as_view(url_name="visual_recs_api:schema", schema=None), name="redoc"),
    path("<str:key>/search/", views.SearchByImageView.as_view(), name="search"),
    path("<str:key>/<str:pk>/similar/", views.SimilarItemsView.as_view(), name="similar"),
]

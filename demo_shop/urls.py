"""The demo shop's URLs: its pages, the admin, the events endpoint, and the app's REST API when it is installed."""

from __future__ import annotations

from importlib import import_module

from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from demo_shop.shop import views
from demo_shop.shop.sign_in import SignInForm

# Says "Too many failed sign-ins; try again in N minutes" when the lockout refused a sign-in (sign_in.py).
admin.site.login_form = SignInForm

urlpatterns = [
    path("", views.catalog, name="catalog"),
    path("products/<int:pk>/", views.product_detail, name="product-detail"),
    path("search/", views.search, name="search"),
    path("admin/", admin.site.urls),
    # The events endpoint the strip reports impressions and clicks to (plain Django, no DRF).
    path("visual-recs/", include("visual_recs.urls")),
]

# The REST API is an optional extra of the app (`pip install django-visual-recs[api]`).
try:
    api_urls = import_module("visual_recs.api.urls")
except ModuleNotFoundError as exc:
    # Only a missing extra is tolerated: an import error inside the API is a bug to see.
    if exc.name not in ("visual_recs.api", "visual_recs.api.urls", "rest_framework", "drf_spectacular"):
        raise
else:
    urlpatterns.append(path("api/visual-recs/", include(api_urls)))

# The photos, also without DEBUG (the compose stack); WhiteNoise serves the CSS.
urlpatterns.append(path(f"{settings.MEDIA_URL.strip('/')}/<path:path>", views.media_file, name="media"))

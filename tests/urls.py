from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/visual-recs/", include("visual_recs.api.urls")),
    path("visual-recs/", include("visual_recs.urls")),
]

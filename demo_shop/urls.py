from django.conf import settings
from django.conf.urls.static import static
from django.contrib import admin
from django.urls import path

from demo_shop.shop import views

urlpatterns = [
    path("", views.catalog, name="catalog"),
    path("products/<int:pk>/", views.product_detail, name="product-detail"),
    path("admin/", admin.site.urls),
] + static(settings.MEDIA_URL, document_root=settings.MEDIA_ROOT)

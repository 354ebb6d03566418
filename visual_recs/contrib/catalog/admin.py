"""The bundled Product's admin: its fields, plus the index status, similar items and reindex action."""

from __future__ import annotations

from django.contrib import admin

from visual_recs.admin import VisualRecsAdminMixin

from .models import Product


@admin.register(Product)
class ProductAdmin(VisualRecsAdminMixin, admin.ModelAdmin):
    list_display = ("title", "gender", "category", "product_type", "colour", "is_active")
    list_filter = ("is_active", "gender", "category", "product_type")
    search_fields = ("title", "sku")
